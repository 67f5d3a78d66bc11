"""`tinyexit build --board B RUN`: cross-compile a run's firmware for a board and report its size."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "build"
HELP = "cross-compile a run's firmware for a board; report flash and RAM against the board's budget"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (quantized, calibrated)")
    parser.add_argument("--board", required=True, help="board name (boards/*.yaml) or path to a board file")
    parser.add_argument("--emulate", action="store_true", help="build the board's emulated (QEMU) variant")
    parser.add_argument("--inputs", type=int, default=100, help="test inputs baked into the firmware (default 100)")
    parser.add_argument("--serial-inputs", action="store_true",
                        help="read inputs from the UART instead of baking them in")
    parser.add_argument("--no-exit", action="store_true", help="never take an early exit (the baseline)")
    parser.add_argument("--out", help="output folder (default RUN/firmware/build/<board>)")
    parser.add_argument("--opt", default="-O2", choices=["-O2", "-Os", "-O3"], help="optimization (default -O2)")


def run(args) -> int:
    from tinyexit.build import build_run

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    if args.inputs < 1:
        raise TinyexitError("--inputs must be at least 1")
    fw = build_run(args.run, args.board, emulate=args.emulate, num_inputs=args.inputs, no_exit=args.no_exit,
                   serial_inputs=args.serial_inputs, out=args.out, opt=args.opt)
    print(f"{fw.board.name}{' (emulated on ' + fw.board.qemu_machine + ')' if fw.board.emulated else ''}: {fw.elf}")
    print(fw.sizes.table())
    from tinyexit.run import Run
    doc = Run(args.run).library_report() or {}
    fused = sorted(n for n, m in doc.get("models", {}).items() if m.get("plan", "layers") != "layers")
    print("memory plan: " + (f"fused row-streamed chains in {', '.join(fused)} (tinyexit generate --plan fused|fused2); "
                             "the others layer by layer" if fused else "layer by layer"))
    return 0
