"""`tinyexit branch RUN [--points ...]`: one shared exit branch over N exit points (FreeML), int8 + C."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "branch"
HELP = ("train one shared exit classifier over N exit points of the frozen backbone, quantize and generate it "
        "(RUN/branch/), and compare it with N separate heads")


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory written by `tinyexit train`")
    parser.add_argument("--points", default=None, metavar="LAYER,LAYER,...",
                        help="exit-point layers (default: every block output, e.g. block1_out..block4_out)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the shared branch (default 40)")
    parser.add_argument("--head-epochs", type=int, default=8,
                        help="epochs of the separate heads trained for comparison; 0 builds and counts them "
                             "only (default 8)")
    parser.add_argument("--num-calibration", type=int, default=300,
                        help="training inputs used as int8 representative data (default 300)")
    parser.add_argument("--num-eval", type=int, default=None, help="evaluate on N test inputs (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-firmware", action="store_true", help="skip generating the C library")


def run(args) -> int:
    from tinyexit.run import Run

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise TinyexitError(f"run directory '{run_dir}' does not exist; train one with `tinyexit train`")
    Run(run_dir).check_trained()   # before importing TensorFlow
    from tinyexit.branch import BranchConfig, format_report, train_branch
    if args.num_eval is not None and args.num_eval < 1:
        raise TinyexitError("--num-eval must be at least 1")
    points = [p.strip() for p in args.points.split(",") if p.strip()] if args.points is not None else None
    cfg = BranchConfig(epochs=args.epochs, head_epochs=args.head_epochs, num_calibration=args.num_calibration,
                       num_eval=args.num_eval, seed=args.seed)
    rep = train_branch(run_dir, points=points, config=cfg, firmware=not args.no_firmware, log=print)
    print(format_report(rep))
    print(f"wrote {Run(run_dir).branch_dir}")
    return 0
