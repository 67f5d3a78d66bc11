"""`tinyexit calibrate RUN`: risk-controlled exit threshold (RUN/policy.json, RUN/calibration.png)."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "calibrate"
HELP = "choose the exit threshold with distribution-free risk control (writes RUN/policy.json)"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (after `tinyexit quantize`)")
    parser.add_argument("--epsilon", type=float, default=0.02,
                        help="risk level E: tolerated fraction of inputs spoiled by exiting early (default 0.02)")
    parser.add_argument("--delta", type=float, default=0.1,
                        help="D: allowed probability that the risk exceeds E (ltt, ucb; default 0.1)")
    parser.add_argument("--risk", choices=["gap", "consistency"], default="gap",
                        help="gap: early wrong where the full model is right; consistency: early != full")
    parser.add_argument("--method", choices=["ltt", "crc", "ucb"], default="ltt",
                        help="ltt: Learn-then-Test (Hoeffding-Bentkus); ucb: upper confidence bound; "
                             "crc: conformal risk control (risk <= E in expectation)")
    parser.add_argument("--policy", choices=["max_softmax", "margin", "entropy", "confidence", "patience", "difference"],
                        default="max_softmax",
                        help="confidence: a learned confidence head per early exit (trained or reused from "
                             "RUN/confidence/, int8, run by the firmware after the exit point); patience, "
                             "difference: temporal rules over consecutive inputs of a stream (no guarantee)")
    t = parser.add_argument_group("temporal policies (patience, difference)")
    t.add_argument("--stream-scenes", type=float, default=5.0, metavar="MEAN",
                   help="mean inputs per scene of the validation/test streams (default 5)")
    t.add_argument("--stream-length", type=int, default=None, help="inputs per stream (default: the split's size)")
    t.add_argument("--gate", type=float, default=None, metavar="T",
                   help="also require max-softmax >= T at the first exit to stop there (default: no gate)")
    t.add_argument("--reference", choices=["scene", "previous"], default="scene",
                   help="difference: compare with the output that opened the scene (default) or the previous one")
    g = parser.add_argument_group("confidence policy")
    g.add_argument("--confidence-train", choices=["validation", "train"], default="validation",
                   help="data the confidence head learns from: part of the validation split the exit head never "
                        "saw (default; the rest calibrates) or the training split")
    g.add_argument("--confidence-fraction", type=float, default=0.5,
                   help="fraction of the validation split that trains the head (default 0.5)")
    g.add_argument("--confidence-epochs", type=int, default=30, help="training epochs of the head (default 30)")
    g.add_argument("--confidence-hidden", type=int, default=8, help="hidden units of the branch (default 8)")
    g.add_argument("--retrain", action="store_true", help="train a new confidence head even if RUN/confidence/ has one")
    parser.add_argument("--source", choices=["int8", "float"], default="int8",
                        help="calibrate the int8 pieces the firmware runs (default) or the float model")


def run(args) -> int:
    from tinyexit.policy.calibrate import calibrate_run

    if not Path(args.run).is_dir():
        raise TinyexitError(f"run directory '{args.run}' does not exist; train one with `tinyexit train`")
    conf = None
    if args.policy == "confidence":
        conf = {"train_on": args.confidence_train, "fraction": args.confidence_fraction,
                "epochs": args.confidence_epochs, "hidden": args.confidence_hidden, "retrain": args.retrain}
    p = calibrate_run(args.run, epsilon=args.epsilon, delta=args.delta, risk=args.risk, method=args.method,
                      policy=args.policy, source=args.source, log=print, confidence=conf,
                      stream_scenes=args.stream_scenes, stream_length=args.stream_length, gate=args.gate,
                      reference=args.reference)
    if p["policy"] in ("patience", "difference"):
        return _print_temporal(args, p)
    t = p["test"]
    thr = "never exit (no threshold certified)" if p["threshold"] is None else \
        f"{p['threshold']:.4f} (integer form {p['threshold_q']})"
    print(f"{p['method']} on {p['calibration_size']} {p['calibration_split']} inputs, {p['risk']} risk, "
          f"E={p['epsilon']:g} D={p['delta']:g} ({p['guarantee']})")
    print(f"  {p['policy']} threshold at {p['exit']}: {thr}")
    print(f"  test ({t['size']} inputs): risk {t['risk']:.4f}, exit rate {100 * t['exit_rate']:.1f}%, "
          f"accuracy {100 * t['accuracy']:.2f}% (no exit {100 * t['final_accuracy']:.2f}%)")
    print(f"  mean MACs {t['mean_macs']:,.0f} vs {t['no_exit_macs']:,} without exits: "
          f"saving {100 * t['macs_saving']:.1f}%")
    nv = p["naive"]
    if nv["threshold"] is not None:
        print(f"  (for contrast, the naive empirical-risk threshold {nv['threshold']:.4f}: test risk "
              f"{nv['test_risk']:.4f}, exit rate {100 * nv['exit_rate']:.1f}%, no guarantee)")
    if p["policy"] == "confidence":
        m, eq = p["max_softmax_same_calibration"], p["equal_exit_rate_test"]
        print(f"  max-softmax, same method and calibration inputs: test exit rate {100 * m['exit_rate']:.1f}%, "
              f"accuracy {100 * m['accuracy']:.2f}%, mean MACs {m['mean_macs']:,.0f}")
        print(f"  equal exit rates on test ({eq['exit']}): mean accuracy difference confidence - max-softmax "
              f"{100 * eq['mean_difference']:+.2f} points; AUROC right-vs-wrong: confidence "
              f"{eq['auroc']['confidence'] or float('nan'):.3f}, max-softmax {eq['auroc']['max_softmax'] or float('nan'):.3f}")
    from tinyexit.run import Run
    print(f"wrote {Run(args.run).policy_path} and {Run(args.run).calibration_plot}")
    return 0


def _print_temporal(args, p: dict) -> int:
    from tinyexit.run import Run
    t = p["test"]
    param = f"patience {p['patience']}" if p["policy"] == "patience" else \
        f"distance {p['threshold']} (integer squared distance {p['distance_q']}, reference {p['reference']})"
    gate = "no gate" if p["max_softmax"] is None else f"max-softmax gate {p['max_softmax']} (code {p['threshold_q']})"
    print(f"{p['method']} on a validation stream of {p['calibration_size']} inputs (mean "
          f"{p['stream']['mean_scene']:g} per scene), {p['risk']} risk, E={p['epsilon']:g} D={p['delta']:g}")
    print(f"  guarantee: {p['guarantee']}")
    print(f"  {param}, {gate}" if p["selected"] else "  nothing selected: never stop early")
    print(f"  test stream ({t['size']} inputs): risk {t['risk']:.4f}, exit rate {100 * t['exit_rate']:.1f}%, "
          f"accuracy {100 * t['accuracy']:.2f}% (no exit {100 * t['final_accuracy']:.2f}%)")
    print(f"  mean MACs {t['mean_macs']:,.0f} vs {t['no_exit_macs']:,} without exits: "
          f"saving {100 * t['macs_saving']:.1f}%")
    print(f"wrote {Run(args.run).policy_path}")
    return 0
