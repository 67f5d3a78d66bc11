"""`tinyexit demo`: the whole toolchain end to end on the embedded default (synthetic keywords, DS-CNN with
an early exit, int8 segments, risk-controlled threshold, generated C, emulated nRF52840, benchmark)."""
from pathlib import Path

NAME = "demo"
HELP = "run every stage end to end on the default task and print the benchmark table"


def add_arguments(p):
    p.add_argument("--task", choices=["kws", "ic", "vww"], default="kws")
    p.add_argument("--data", type=Path, default=None, help="real data set folder (default: offline data)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/TASK)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--board", default="nrf52840")
    p.add_argument("--inputs", type=int, default=100, help="test inputs run on the board (default 100)")
    p.add_argument("--reuse", action="store_true", help="reuse an existing trained model in the run directory")


def run(args) -> int:
    from tinyexit.flow import run_pipeline

    run_pipeline(task=args.task, data=args.data, out=args.out, epochs=args.epochs, board=args.board,
                 num_inputs=args.inputs, retrain=not args.reuse)
    return 0
