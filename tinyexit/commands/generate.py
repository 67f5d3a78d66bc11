"""`tinyexit generate (RUN | MODEL.tflite) --out DIR`: int8 model(s) -> one self-contained C library."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "generate"
HELP = "generate a C library (bit-exact with TFLM) from a run's int8 segments/exit heads or from one .tflite"


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="RUN|MODEL.tflite",
                        help="run directory (reads RUN/quant/manifest.json) or one int8 .tflite file")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder, replaced whole (default for a run: RUN/firmware/model)")
    parser.add_argument("--name", default=None, help="model name for a single .tflite (default: file stem)")
    parser.add_argument("--prefix", default="", help="prefix added to every model name")
    parser.add_argument("--kernels", default="reference", help="kernel variant (default: reference)")
    parser.add_argument("--no-inplace", action="store_true",
                        help="never let an op overwrite its input (larger arena; every step re-runnable)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="one step per TFLite op (no CONV_2D+ADD or STRIDED_SLICE+DEPTHWISE_CONV_2D steps)")
    parser.add_argument("--no-reorder", action="store_true", help="run the steps in the file's op order")
    parser.add_argument("--no-tflm", action="store_true", help="skip the TFLM arena comparison")
    parser.add_argument("--plan", choices=("layers", "fused", "fused2"), default="layers",
                        help="memory plan: layers (default; every step's whole output in the arena, steps "
                             "checkpointable), fused (conv chains row-streamed where that plans less; a chain "
                             "is one step) or fused2 (the same, two rows per kernel call on odd widths: faster, "
                             "a little more RAM)")
    parser.add_argument("--no-wide", action="store_true",
                        help="leave the wide CONV_2D path out (cortex_m4 kernels, layer plan): slower convs, but "
                             "no second, widened copy of their weights in flash")
    parser.add_argument("--dense-weights", action="store_true",
                        help="store every layer's weights dense (default: pruned layers as sparse run lists "
                             "when smaller)")


def run(args) -> int:
    from tinyexit.codegen import generate
    from tinyexit.run import Run

    src = Path(args.source)
    chain = []
    if src.is_dir():
        run = Run(src)
        models = run.quant_models()
        chain = run.chain()   # segments and heads pass their outputs through the arena
        out = Path(args.out) if args.out else run.library_dir
    elif src.is_file():
        if not args.out:
            raise TinyexitError("give the output folder with --out DIR when generating from a .tflite file")
        models = {args.name or src.stem: src}
        out = Path(args.out)
    else:
        raise TinyexitError(f"'{src}' is neither a run directory nor a .tflite file; check the path")
    report = generate(models, out, name_prefix=args.prefix, kernels=args.kernels, inplace=not args.no_inplace,
                      fuse_ops=not args.no_fuse, reorder=not args.no_reorder, compare_tflm=not args.no_tflm,
                      sparse=not args.dense_weights, chain=chain, plan=args.plan,
                      wide=not args.no_wide)
    print(report.table())
    print(f"wrote {out} (build and test on the host: make -C {out} && {out}/tx_host NAME < in.bin > out.bin)")
    return 0
