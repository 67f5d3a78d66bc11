"""`tinyexit search RUN_OR_MODEL --board B --accuracy-target A`: where to put an early exit, and how wide."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "search"
HELP = ("exit placement search: exit point x head width under a board's flash/RAM budget; Pareto front of "
        "accuracy vs expected MACs; the chosen design is then built and measured")


def add_arguments(p) -> None:
    p.add_argument("source", metavar="RUN_OR_MODEL", help="run directory (its exits are dropped) or a .keras model")
    p.add_argument("--board", default="nrf52840", help="board whose flash and RAM budget designs must fit (default nrf52840)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--accuracy-target", type=float, help="overall accuracy to meet on validation, e.g. 0.9")
    g.add_argument("--max-drop", type=float, help="or: at most this accuracy below the backbone's, e.g. 0.01")
    p.add_argument("--out", type=Path, default=None, help="folder for search.json/search.png (default RUN_OR_MODEL's "
                                                           "folder /search) and the verified run (OUT/verified)")
    p.add_argument("--task", choices=["kws", "ic", "vww"], default=None, help="data of a .keras model (with --data)")
    p.add_argument("--data", type=Path, default=None, help="data folder of a .keras model")
    p.add_argument("--from-run", type=Path, default=None, help="reuse this run's data recipe")
    p.add_argument("--widths", default="8,16,32", help="head widths to try, comma separated (default 8,16,32)")
    p.add_argument("--head", choices=["auto", "slice", "conv"], default="auto")
    p.add_argument("--max-points", type=int, default=6, help="candidate exit points kept (spread by MACs; default 6)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per head (default 5)")
    p.add_argument("--max-train", type=int, default=None, help="subsample the training split for speed")
    p.add_argument("--flash-budget", type=int, default=None, help="override the board's flash budget (bytes)")
    p.add_argument("--ram-budget", type=int, default=None, help="override the board's RAM budget (bytes)")
    p.add_argument("--no-verify", action="store_true", help="do not build and measure the chosen design")
    p.add_argument("--workers", type=int, default=1,
                   help="Ray workers for the candidate points (default 1: here, without Ray); each loads the data once")
    p.add_argument("--address", default=None, help="an existing Ray cluster to run the candidate points on")


def run(args) -> int:
    from tinyexit.boards import load_board
    if Path(args.source).is_dir():
        from tinyexit.run import Run
        Run(args.source).check_trained()   # before importing TensorFlow
    from tinyexit.research.search import Budget, SearchConfig, search
    from tinyexit.research.search_verify import verify

    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise TinyexitError(f"--widths must be comma-separated integers, got {args.widths!r}") from None
    if args.workers < 1:
        raise TinyexitError(f"--workers {args.workers}: at least 1")
    if args.epochs < 1 or (args.max_points is not None and args.max_points < 1):
        raise TinyexitError("--epochs and --max-points must be at least 1")
    board = load_board(args.board)
    b = Budget.of_board(board)
    if args.flash_budget or args.ram_budget:
        b = Budget(args.flash_budget or b.flash_bytes, args.ram_budget or b.ram_bytes,
                   f"{b.source}; overridden: flash {args.flash_budget or b.flash_bytes:,} B, RAM "
                   f"{args.ram_budget or b.ram_bytes:,} B")
    src = Path(args.source)
    out = args.out or ((src if src.is_dir() else src.parent) / "search")
    cfg = SearchConfig(widths=widths, kind=args.head, max_points=args.max_points, epochs=args.epochs,
                       max_train=args.max_train)
    rep = search(src, board=board, budget=b, accuracy_target=args.accuracy_target, max_drop=args.max_drop, out=out,
           config=cfg, task=args.task, data=args.data, from_run=args.from_run, log=print,
           workers=args.workers, address=args.address)
    print(f"wrote {out / 'search.json'} and {out / 'search.png'}")
    if rep["chosen"] == "no_exit":
        print("no early exit meets the accuracy target within the budget: the chosen design is the model without "
              "exits; lower the target (--max-drop) or try wider heads")
    elif not args.no_verify:
        ver = verify(out, out=out / "verified", log=print)
        print(f"verified run directory: {ver['run']}")
    return 0
