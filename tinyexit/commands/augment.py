"""`tinyexit augment MODEL --out RUN`: attach exit heads to a trained Keras model without changing its weights."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "augment"
HELP = "attach early-exit heads to an already trained Keras model (backbone frozen) and write a run directory"


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help=".keras file saved with model.save(), or a run directory")
    p.add_argument("--out", type=Path, help="run directory to write (required unless --list)")
    p.add_argument("--task", choices=["kws", "ic", "vww"], default=None,
                   help="what the model was trained on (with --data); not needed with --from-run")
    p.add_argument("--data", type=Path, default=None,
                   help="kws: Speech Commands v2 style folder; ic: CIFAR-10 folder; vww: image folder "
                        "(ic/vww default: the offline data set)")
    p.add_argument("--from-run", type=Path, default=None, help="reuse the data recipe of this run directory")
    p.add_argument("--point", action="append", default=None,
                   help="exit point layer name (repeat for several exits; default: the candidate nearest to half "
                        "the backbone's MACs); see --list")
    p.add_argument("--width", type=int, default=32, help="head width in channels (default 32)")
    p.add_argument("--head", choices=["auto", "slice", "conv"], default="auto",
                   help="slice: first WIDTH channels; conv: 1x1 conv to WIDTH; auto: slice when it can (default)")
    p.add_argument("--epochs", type=int, default=10, help="head training epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--confidence", action="store_true",
                   help="also train a learned confidence branch on the first exit (RUN/confidence/; compared with "
                        "max-softmax at equal exit rates; its int8 model needs `tinyexit quantize RUN` and "
                        "tinyexit.research.confidence.quantize_confidence)")
    p.add_argument("--list", action="store_true", help="list the candidate exit points and stop")


def run(args) -> int:
    if Path(args.model).is_dir():
        from tinyexit.run import Run
        Run(args.model).check_trained()   # before importing TensorFlow
    from tinyexit.research.augment import HeadConfig, HeadTrainConfig, augment_model, format_candidates, load_keras
    from tinyexit.research.graph import candidate_points

    if args.list:
        model, _ = load_keras(args.model)
        print(format_candidates(candidate_points(model)))
        return 0
    if args.out is None:
        raise TinyexitError("--out RUN is required: the run directory to write")
    if args.epochs < 1 or args.batch_size < 1:
        raise TinyexitError("--epochs and --batch-size must be at least 1")
    from_run = args.from_run
    if from_run is None and args.task is None and Path(args.model).is_dir():
        from_run = Path(args.model)           # a run directory carries its own data recipe
    rep = augment_model(args.model, out=args.out, points=args.point, head=HeadConfig(args.width, args.head),
                        task=args.task, data=args.data, from_run=from_run,
                        train_config=HeadTrainConfig(epochs=args.epochs, batch_size=args.batch_size), log=print)
    print(f"{'exit':<10} {'point':<24} {'test acc':>9} {'MACs':>11}")
    for e in rep["exits"]:
        print(f"{e['name']:<10} {e['point'] or '-':<24} {100 * e['accuracy']:8.2f}% {e['macs']:>11,}")
    w = rep["augment"]["original_weights"]
    print(f"original weights: {w['identical']}/{w['tensors']} tensors bit-identical; run directory: {args.out}")
    if args.confidence:
        from tinyexit.research.confidence import train_confidence
        train_confidence(args.out, epochs=args.epochs, batch_size=args.batch_size, log=print)
    return 0
