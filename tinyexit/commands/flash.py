"""`tinyexit flash --board nrf52840 RUN`: build, flash with pyOCD, read the results from the serial port;
`--emulate` runs the same firmware on QEMU instead."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "flash"
HELP = "build a run's firmware, flash it (pyOCD) or emulate it (--emulate), print the results it sends back"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (quantized, calibrated)")
    parser.add_argument("--board", required=True, help="board name (boards/*.yaml)")
    parser.add_argument("--emulate", action="store_true", help="run on the board's emulator (QEMU) instead")
    parser.add_argument("--runner", help="override the board's default runner (pyocd, qemu, renode: one the "
                                         "board lists)")
    parser.add_argument("--port", help="serial port of the board (default: auto-detected from the probe)")
    parser.add_argument("--probe", help="unique id (or part of it) of the debug probe to use")
    parser.add_argument("--inputs", type=int, default=20, help="test inputs baked into the firmware (default 20)")
    parser.add_argument("--serial-inputs", action="store_true",
                        help="send the test inputs over the serial port instead of baking them into the image")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up (default 120)")


def run(args) -> int:
    from tinyexit.boards import load_board
    from tinyexit.build import build_run
    from tinyexit.targets import get_runner
    from tinyexit.targets.app_output import parse_app_output

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    if args.timeout <= 0 or args.inputs < 1:
        raise TinyexitError("--timeout must be positive and --inputs at least 1")
    emulate = args.emulate or args.runner == "qemu"
    board = load_board(args.board, emulate=emulate)
    runner = get_runner(board, args.runner, needs=("send",) if args.serial_inputs else (), port=args.port,
                        probe=args.probe)
    if runner.caps.flash:  # a real board: without a probe, fail at once, before building
        from tinyexit.targets import NoProbeError
        from tinyexit.targets.pyocd_runner import connected_probes, no_probe_message
        if not connected_probes():
            raise NoProbeError(no_probe_message(board))
    fw = build_run(args.run, board, num_inputs=args.inputs, serial_inputs=args.serial_inputs)
    print(fw.sizes.table())
    send = b""
    if args.serial_inputs:
        from tinyexit.build import pipeline_from_run
        from tinyexit.run import Run
        _, man, _ = pipeline_from_run(args.run)
        x, _ = Run(args.run).test_inputs(man, args.inputs)
        send = len(x).to_bytes(4, "little") + x.astype("int8").tobytes()
    print(f"running {fw.elf.name} with {runner.name} ...")
    result = runner.run(fw.elf, timeout=args.timeout, send=send)
    for line in result.lines:
        if line.startswith("TX "):
            print(line)
    out = parse_app_output(result.output)
    s = out.summary
    print(f"{s['n']} inputs: {s['correct']} correct ({100 * s['correct'] / max(1, s['n']):.1f} %), exits "
          f"{', '.join(f'{n}={c}' for n, c in zip(out.exits, s['exits']))} ({result.seconds:.1f} s)")
    return 0
