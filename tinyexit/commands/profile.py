"""`tinyexit profile (RUN | MODEL.tflite) --board B`: per layer MACs, instructions, estimated Cortex-M4 cycles,
cycles per MAC, arena ranges, scratch and weights, measured on the board's emulator; a table, JSON and a PNG
(cycles per layer; the memory plan as tensor lifetime x arena offset rectangles)."""
from __future__ import annotations

NAME = "profile"
HELP = "per-layer instructions, estimated cycles and memory plan of a model or a run's library, on the emulator"


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="RUN|MODEL.tflite",
                        help="run directory (its library's segments, exit heads, confidence models; nothing is "
                             "written into it) or one int8 .tflite file")
    parser.add_argument("--board", default="nrf52840",
                        help="board name or board .yaml (default nrf52840); it picks the kernel variant and must "
                             "have a qemu runner: instructions are counted in the emulator")
    parser.add_argument("--emulate", action="store_true",
                        help="accepted for symmetry with bench; profiling always runs on the board's emulator")
    parser.add_argument("--inputs", type=int, default=4, help="random int8 inputs, averaged (default 4)")
    parser.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    parser.add_argument("--png", metavar="OUT", help="write the two-panel figure (cycles per layer, memory plan)")
    parser.add_argument("--work", metavar="DIR", help="keep the generated library and firmware there")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per firmware run (default 600)")


def run(args) -> int:
    from tinyexit.io import write_json
    from tinyexit.profile import plot, profile, table

    doc = profile(args.source, args.board, inputs=args.inputs, work=args.work, timeout=args.timeout)
    print(table(doc))
    if args.json:
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.png:
        plot(doc, args.png)
        print(f"wrote {args.png}")
    return 0 if doc["identical_to_tflite_micro"] else 1
