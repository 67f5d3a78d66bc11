"""`tinyexit bench RUN --board nrf52840 --emulate`: accuracy, exit rates, MACs, instructions per inference
with and without early exit, flash and RAM, measured on the (emulated) board."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "bench"
HELP = "measure a run's firmware on a board or its emulator: accuracy, exits, instructions, flash, RAM"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (quantized, calibrated)")
    parser.add_argument("--board", default="nrf52840", help="board name (default nrf52840)")
    parser.add_argument("--emulate", action="store_true", help="run on the board's emulator (QEMU)")
    parser.add_argument("--runner", help="override the board's default runner (pyocd, qemu, renode: one the board "
                                         "lists); exact instruction counts need one that counts them (qemu)")
    parser.add_argument("--inputs", type=int, default=100, help="test inputs (default 100)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per firmware run (default 900)")
    parser.add_argument("--no-oracle", action="store_true",
                        help="skip checking every output against tflite_micro and the Python policy")
    parser.add_argument("--out", help="output folder (default RUN/bench/<board>)")
    parser.add_argument("--kernels", help="kernel variant of the generated library (firmware_templates/kernels/"
                                          "<variant>, e.g. cortex_m4); default: the run's library as generated, "
                                          "or the board's variant when RUN has none yet")


def run(args) -> int:
    from tinyexit.bench import bench_run

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    if args.inputs < 1 or args.timeout <= 0:
        raise TinyexitError("--inputs must be at least 1 and --timeout positive")
    r = bench_run(args.run, args.board, emulate=args.emulate or args.runner == "qemu", num_inputs=args.inputs,
                  timeout=args.timeout, runner=args.runner, check_oracle=not args.no_oracle, out=args.out,
                  kernels=args.kernels)
    print(f"wrote {r['files']['json']} and {r['files']['png']}")
    checks = dict(r.get("oracle", {}), **({"host": r["host"]} if "host" in r else {}))
    bad = [k for k, v in checks.items() if v["identical"] != v["inputs"]]
    if bad:
        print(f"WARNING: the firmware differs from {', '.join(bad)} on some inputs (see bench.json)")
        return 1
    return 0
