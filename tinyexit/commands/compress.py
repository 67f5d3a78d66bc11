"""`tinyexit compress RUN --target-kb N | --board B`: pruning + quantization-aware training to a weight budget."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "compress"
HELP = "prune (tfmot) and quantization-aware train a run to fit a weight budget; writes a new run directory"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="trained run directory (model.keras, model.json)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--target-kb", type=float, default=None,
                        help="budget for the generated library's constant bytes (weights stored sparse when smaller, "
                             "biases, requantization tables), KiB")
    budget.add_argument("--board", default=None, help="fit the board's flash minus --code-kb")
    budget.add_argument("--sparsity", type=float, default=None, help="prune every layer to this sparsity instead")
    parser.add_argument("--code-kb", type=float, default=96.0,
                        help="flash kept for code, runtime, app and test inputs with --board (default 96)")
    parser.add_argument("--out", default=None, help="output run directory (default: RUN-c<target>)")
    parser.add_argument("--prune-epochs", type=int, default=10,
                        help="fine-tuning epochs while pruning (default 10; more helps at high sparsity)")
    parser.add_argument("--qat-epochs", type=int, default=3, help="quantization-aware training epochs (default 3)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-train", type=int, default=None, help="use at most N training examples")
    parser.add_argument("--num-eval", type=int, default=None, help="evaluate int8 on N test inputs (default all)")
    parser.add_argument("--measure-board", default="nrf52840",
                        help="build every step's firmware for this board to report flash and RAM (default nrf52840; "
                             "'none' skips)")


def run(args) -> int:
    from tinyexit.research.compress import CompressConfig, compress_run

    src = Path(args.run)
    if not src.is_dir():
        raise TinyexitError(f"run directory '{src}' does not exist; train one with `tinyexit train`")
    for flag in ("prune_epochs", "qat_epochs"):
        if getattr(args, flag) < 0:
            raise TinyexitError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.batch_size < 1:
        raise TinyexitError("--batch-size must be at least 1")
    tag = (f"{args.target_kb:g}kb" if args.target_kb is not None else args.board if args.board
           else f"s{args.sparsity:g}" if args.sparsity is not None else "c")
    out = Path(args.out) if args.out else src.with_name(f"{src.name}-c{tag}")
    cfg = CompressConfig(target_kb=args.target_kb, board=args.board, code_kb=args.code_kb, sparsity=args.sparsity,
                         prune_epochs=args.prune_epochs, qat_epochs=args.qat_epochs, batch_size=args.batch_size,
                         max_train=args.max_train, num_eval=args.num_eval,
                         measure_board=None if args.measure_board == "none" else args.measure_board)
    rep = compress_run(src, out, cfg, log=print)
    print(table(rep))
    print(f"wrote {out} (compress.json, compress.png; quantize / generate / build / bench work on it)")
    return 0 if rep["met_budget"] else 1


def table(rep: dict) -> str:
    names = rep["exits"]
    head = f"{'step':<12}" + "".join(f" {n + ' float':>12} {n + ' int8':>11}" for n in names) \
        + f" {'stored B':>9} {'dense B':>9} {'sparsity':>8} {'flash B':>9} {'RAM B':>8}"
    rows = [head]
    for s, st in rep["stages"].items():
        rows.append(f"{s:<12}" + "".join(f" {100 * st['float_accuracy'][n]:11.2f}% {100 * st['int8_accuracy'][n]:10.2f}%"
                                         for n in names)
                    + f" {st['weights']['stored_bytes']:>9,} {st['weights']['dense_bytes']:>9,}"
                      f" {100 * st['overall_sparsity']:7.1f}%"
                      f" {st['board']['flash'] if 'board' in st else '-':>9} {st['board']['ram'] if 'board' in st else '-':>8}")
    if rep.get("selected"):
        rows.append(f"output run: the '{rep['selected']}' step (best final-exit int8 accuracy on the validation split)")
    if rep.get("board_note"):
        rows.append(f"flash/RAM: {rep['board_note']}")
    if rep.get("budget_bytes"):
        rows.append(f"budget {rep['budget_bytes']:,} B ({rep['budget']}): "
                    + ("met" if rep["met_budget"] else "NOT met"))
    return "\n".join(rows)
