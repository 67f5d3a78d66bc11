"""Exact instructions per inference of one int8 .tflite compiled by tinyexit, on an emulated board.

    .venv/bin/python benchmarks/instructions_per_model.py /work/shared/conformance/kws_ref_model.tflite \
        [--board nrf52840] [--inputs 2] [--kernels reference]

Generates the C library, bakes random full-range int8 inputs into the firmware app (one segment, no exit),
runs it on QEMU with the instruction-count plugin (window tx_bench_begin .. tx_bench_end, i.e. one
tx_invoke per input), checks every output against tflite_micro, and prints instructions per inference,
instructions per MAC, arena, code and weights, flash and RAM. Compare with ../shared/ANCHORS.md."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.boards import load_board
from tinyexit.build import APP_SOURCES, build_firmware, library_sources, render_app
from tinyexit.codegen.cformat import c_ident
from tinyexit.codegen.generate import generate
from tinyexit.pipeline import SEGMENT, Pipeline, Stage
from tinyexit.quantize import TflmModel
from tinyexit.targets import get_runner
from tinyexit.targets.app_output import parse_app_output
from tinyexit.toolchain import symbol_address


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--board", default="nrf52840")
    ap.add_argument("--inputs", type=int, default=2)
    ap.add_argument("--kernels", default="reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runner", help="the emulated board's runner (default: the board's; it must count "
                                     "instructions between two addresses)")
    args = ap.parse_args()
    board = load_board(args.board, emulate=True)
    runner = get_runner(board, args.runner, needs=("instruction_windows",))
    tfl = args.model.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name = c_ident(args.model.stem)
        rep = generate({args.model.stem: args.model}, tmp / "lib", kernels=args.kernels, compare_tflm=False)
        fig = rep.models[args.model.stem]
        x = np.random.default_rng(args.seed).integers(-128, 128, (args.inputs, fig.input_size)).astype(np.int8)
        pipe = Pipeline((Stage(name, SEGMENT, 0, 0, fig.input_size, fig.output_size),), input_size=fig.input_size,
                        exit_names=("final",))
        render_app(pipe, x, None, tmp / "app")
        lib = tmp / "lib"
        srcs = library_sources(lib)
        fw = build_firmware(board, [tmp / "app" / s for s in APP_SOURCES] + srcs, tmp / "fw",
                            include_dirs=[tmp / "app", lib], weight_sources=[s for s in srcs if s.name.startswith("tx_model_")])
        window = (symbol_address(fw.elf, "tx_bench_begin"), symbol_address(fw.elf, "tx_bench_end"))
        res = runner.run(fw.elf, window=window, each_window=True, timeout=1800)
        out = parse_app_output(res.output)
        oracle = TflmModel(tfl)
        ref = oracle.run(x.reshape([len(x)] + list(oracle.input_shape[1:])))[0].reshape(len(x), -1)
        same = sum(r.output == ref[r.index].astype(np.int8).tobytes() for r in out.results)
        w = res.insns.per_window
        print(f"{args.model.name} on {board.name} (QEMU {board.qemu_machine}), kernels {args.kernels}, {len(x)} random inputs")
        print(f"  outputs identical to tflite_micro: {same}/{len(x)}")
        print(f"  instructions per inference (exact): {', '.join(f'{v:,}' for v in w)}")
        print(f"  MACs {fig.macs:,}; instructions per MAC {np.mean(w) / fig.macs:.3f}")
        print(f"  arena {rep.arena_bytes:,} B; library code {rep.code_bytes} B (host measure); weights {rep.weight_bytes:,} B")
        print("  " + fw.sizes.table().replace("\n", "\n  "))
        return 0 if same == len(x) else 1


if __name__ == "__main__":
    sys.exit(main())
