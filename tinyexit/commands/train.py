"""`tinyexit train kws`: train a model with early exits and write a run directory."""
from pathlib import Path

NAME = "train"
HELP = "train a model with early exits (kws: DS-CNN with a T-RecX exit)"


def add_arguments(p):
    from tinyexit.train import TrainConfig

    p.add_argument("task", choices=["kws"], help="which task to train")
    p.add_argument("--data", type=Path, default=None,
                   help="Speech Commands v2 style folder (default: make or reuse the offline synthetic set)")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {TrainConfig.epochs})")
    p.add_argument("--out", type=Path, default=Path("runs/kws"), help="run directory (default runs/kws)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args) -> int:
    from tinyexit.train import format_report, train_kws

    report = train_kws(data=args.data, out=args.out, epochs=args.epochs, verbose=0 if args.quiet else 2)
    print(format_report(report))
    print(f"run directory: {args.out}")
    return 0
