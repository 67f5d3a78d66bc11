"""`tinyexit quantize RUN`: int8 segments and exit heads with aligned boundary parameters."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "quantize"
HELP = "split the trained model at its exits and convert each piece to int8 TFLite (RUN/quant/)"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory written by `tinyexit train`")
    parser.add_argument("--num-calibration", type=int, default=500,
                        help="training inputs used as representative data (default 500)")
    parser.add_argument("--num-eval", type=int, default=None,
                        help="evaluate on N test inputs drawn at random (seeded) (default: all)")
    parser.add_argument("--method", choices=["cut", "convert"], default="cut",
                        help="cut: convert the whole model once and cut its int8 graph at the exit points "
                             "(bit-exact for any graph; default); convert: convert each piece and align the "
                             "boundary parameters")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip converting the whole model to check the chained segments against it")


def run(args) -> int:
    from tinyexit.quantize import quantize_run
    from tinyexit.run import Run

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    if args.num_eval is not None and args.num_eval < 1:
        raise TinyexitError("--num-eval must be at least 1")
    rep = quantize_run(args.run, num_calibration=args.num_calibration, num_eval=args.num_eval,
                       verify_whole=not args.no_verify, method=args.method, log=print)
    print(f"int8 evaluated with {rep['evaluator']} on {rep['num_test']} test inputs:")
    print(f"  {'exit':<10} {'float acc':>9} {'int8 acc':>9} {'agree':>7} {'MACs to exit':>13}")
    for e in rep["exits"]:
        print(f"  {e['name']:<10} {100 * e['float_accuracy']:8.2f}% {100 * e['int8_accuracy']:8.2f}% "
              f"{100 * e['int8_float_agreement']:6.1f}% {e['macs_to_exit']:13,}")
    chk = rep.get("whole_model_check")
    if chk:
        print(f"chained segments == whole int8 model on {chk['identical']}/{chk['inputs']} test inputs")
    print(f"wrote {Run(args.run).quant.path}")
    if chk and chk["identical"] != chk["inputs"]:
        print("error: the chained segments differ from the whole model; see quant/report.json 'boundaries'")
        return 1
    return 0
