"""`tinyexit train (kws|ic|vww)`: train a model with early exits and write a run directory."""
from pathlib import Path

NAME = "train"
HELP = "train a model with early exits (kws: DS-CNN, ic: ResNet-8, vww: MobileNetV1-0.25; T-RecX exits)"


def add_arguments(p):
    p.add_argument("task", choices=["kws", "ic", "vww"], help="which task to train")
    p.add_argument("--data", type=Path, default=None,
                   help="kws: Speech Commands v2 style folder; ic: CIFAR-10 python batches folder; vww: image "
                        "folder with one sub-folder per class (default: an offline data set, see README)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: kws 20, ic 8, vww 30)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/TASK)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args) -> int:
    from tinyexit.train import format_report, train_image, train_kws

    out = args.out or Path("runs") / args.task
    verbose = 0 if args.quiet else 2
    if args.task == "kws":
        report = train_kws(data=args.data, out=out, epochs=args.epochs, verbose=verbose)
    else:
        report = train_image(args.task, data=args.data, out=out, epochs=args.epochs, verbose=verbose)
    print(format_report(report))
    print(f"run directory: {out}")
    return 0
