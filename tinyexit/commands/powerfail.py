"""`tinyexit powerfail`: power-failure campaign against the checkpointing runtime."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "powerfail"
HELP = "cut the power at random points during inferences and check every committed result"
DESCRIPTION = (
    "Runs inferences of TARGET (a run folder, a .tflite, or a generated library folder) with the "
    "checkpointing runtime while cutting the power at random points: after k NVM events (inside checkpoint "
    "writes) or k work units on the host, after exactly N instructions on the emulated board (--emulate). "
    "Each boot keeps the NVM and loses RAM; an inference is retried until its result is committed, and every "
    "committed result must equal the uninterrupted run byte for byte. Exit status 1 when any result is wrong, "
    "a checkpoint is lost or a boot crashes; failing cuts are printed so they can be replayed. With --branch the "
    "pipeline is RUN/branch's energy-adaptive shared exit branch: results are checked against the int8 chain on "
    "TFLM and the answering exit point against where the low-energy signal arrived.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="RUN folder, MODEL.tflite, or a generated C library folder (tx_model.h)")
    p.add_argument("--cuts", type=int, default=200, help="number of power cuts per granularity (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed replays the same cuts")
    p.add_argument("--granularity", default="layer",
                   help="comma-separated checkpoint granularities: none, layer, layers:N, units:N (default layer)")
    p.add_argument("--inputs", type=int, default=4, help="number of random int8 inputs (default 4)")
    p.add_argument("--threshold", default=None,
                   help="run exit heads and stop at the first whose largest int8 output is >= THRESHOLD; with --branch, "
                        "confidence mode: the branch runs after every point and answers once its largest int8 score "
                        "is >= THRESHOLD ('policy': RUN/policy.json's max_softmax threshold_q, when its exit has the branch's "
                        "output quantization); THRESHOLD:LOW (--branch): once low energy is latched a point answers "
                        "when its score is >= LOW (else the walk computes on), instead of at the next point whatever "
                        "its scores")
    p.add_argument("--branch", action="store_true",
                   help="run the shared exit branch of RUN/branch (tinyexit branch) as the pipeline: after each exit "
                        "point its pool fills the shared vector, and on low energy (or at the last point) the branch "
                        "answers; checks every committed result against the int8 chain on TFLM and that the answering "
                        "point is the first at/after the low-energy signal (default --low-energy 0.5)")
    p.add_argument("--low-energy", type=float, default=None, metavar="P",
                   help="probability per boot that the board signals low energy after a random amount of work; "
                        "the pipeline then finishes at the next exit (host campaign; with --branch also --emulate)")
    p.add_argument("--slots", default=None,
                   help="checkpoint slots used as a ring (default 2, with --nvm-region 'fit'; more spread the erases of "
                        "flash); with --emulate also 'fit': the board's whole NVM region, as a log of checkpoints when "
                        "it holds three of the largest (erases spread over all its pages)")
    p.add_argument("--nvm-region", default=None, metavar="BYTES",
                   help="--emulate: NVM for the slots, whole pages (e.g. 256K), or 'max': all the flash the image leaves "
                        "free; used whole (--slots fit) unless --slots is given (wear levelling: the erases spread "
                        "over all its pages)")
    p.add_argument("--rate", type=float, default=1.0, metavar="HZ",
                   help="--emulate: inferences per second the flash lifetime is stated at (default 1; the JSON "
                        "always holds the 1 Hz figure too)")
    p.add_argument("--board", default=None, help="board for --emulate (default mps2-an386)")
    p.add_argument("--emulate", action="store_true",
                   help="run on the emulated board (QEMU), cutting after exact instruction counts")
    p.add_argument("--runner", help="the emulated board's runner for --emulate (default: the board's; it must cut "
                                    "after exact instruction counts)")
    p.add_argument("--broken", action="append", default=[], choices=["single-slot", "no-crc", "no-erase", "no-vector", "volatile-low"],
                   help="build a deliberately broken runtime (to see the campaign fail)")
    p.add_argument("--shards", type=int, default=None,
                   help="split the cuts into this many independent shards, each with its own seed derived from "
                        "--seed (default: one per 25 cuts); the same --seed and --shards give the same cuts on any "
                        "number of workers")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers on this machine (default: one per core); 1 runs the shards here without Ray")
    p.add_argument("--address", default=None,
                   help="run the shards on an existing Ray cluster (e.g. ray://head:10001 or auto)")
    p.add_argument("--harvester", default=None, metavar="SPEC",
                   help="--emulate: power the board from a capacitor charged by this harvester instead of random cuts: "
                        "constant[:POWER] | solar[:peak=P,seed=N,...] | rf[:on=P,seed=N,...] | FILE.csv (time_s,power_W); "
                        "the energy model decides every cut, warning and off-time")
    p.add_argument("--capacitor", default=None, metavar="C",
                   help="--harvester: capacitor size, e.g. 470uF or 2.2mF (default: the board file's)")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="--harvester: simulated seconds to run (default: until --inferences are done)")
    p.add_argument("--inferences", type=int, default=None, metavar="N",
                   help="--harvester: completed inferences to run (default 10 without --seconds)")
    p.add_argument("--defer-results", action="store_true",
                   help="emulated, just-in-time granularities only: a delivered result waits in RAM and is written "
                        "at the power warning (nothing written per inference on continuous power; a result cut "
                        "before its commit is recomputed and delivered again, never lost or wrong)")
    p.add_argument("--out", default=None, help="work folder (default RUN/powerfail or build/powerfail/NAME)")
    p.add_argument("--json", default=None, help="write the reports as JSON to this file")


def run(args: argparse.Namespace) -> int:
    from tinyexit.errors import TinyexitError
    from tinyexit.intermittent import Granularity, powerfail
    from tinyexit.io import write_json
    from tinyexit.run import Run

    target = Path(args.target)
    if not target.exists():
        raise TinyexitError(f"{target} does not exist; pass a run folder, a .tflite or a generated library")
    if args.cuts < 1 or args.inputs < 1:
        raise TinyexitError("--cuts and --inputs must be at least 1")
    region = _region(args.nvm_region, args.emulate)
    slots = _slots(args.slots or ("fit" if region else "2"), args.emulate)
    if args.branch and (slots == "fit" or region):
        raise TinyexitError("--slots fit and --nvm-region are for the exit-head pipelines; drop them with --branch")
    if args.rate <= 0:
        raise TinyexitError(f"--rate {args.rate:g}: give inferences per second, above 0")
    grans = [g for g in args.granularity.split(",") if g.strip()]
    for g in grans:
        Granularity.parse(g)
    if args.defer_results:
        if not args.emulate or args.branch or args.harvester is not None:
            raise TinyexitError("--defer-results is for emulated exit-head campaigns: add --emulate (without "
                                "--branch or --harvester)")
        if any(not Granularity.parse(g).jit for g in grans):
            raise TinyexitError("--defer-results needs just-in-time checkpoints (the warning writes the result): "
                                "use --granularity jit or jit:layers:N")
    out = Path(args.out) if args.out else (
        Run(target).powerfail_dir if target.is_dir() and Run(target).quant.path.is_dir()
        else Path("build") / "powerfail" / target.stem)
    shared_only = sorted({"no-vector", "volatile-low"} & set(args.broken))
    if shared_only and not args.branch:
        raise TinyexitError(f"--broken {shared_only[0]} breaks the shared-branch pipeline; add --branch")
    threshold = args.threshold
    if threshold is not None and threshold != "policy":
        from tinyexit.intermittent.branch_checks import Threshold
        if ":" in threshold and not args.branch:
            raise TinyexitError(f"--threshold {threshold}: THRESHOLD:LOW is for the shared branch; add --branch")
        try:
            threshold = Threshold.parse(threshold) if ":" in threshold else int(threshold)
        except (TinyexitError, ValueError):
            raise TinyexitError(f"--threshold {threshold!r}: an int8 score (-128..127), THRESHOLD:LOW with "
                                f"--branch, or 'policy'") from None
    if args.runner:  # refused at once (one line), before anything is built
        if not args.emulate:
            raise TinyexitError("--runner chooses the emulated board's runner; add --emulate")
        from tinyexit.boards import load_board
        from tinyexit.intermittent.emulated import RUNNER_NEEDS
        from tinyexit.targets import get_runner
        get_runner(load_board(args.board or "mps2-an386", emulate=True), args.runner, needs=RUNNER_NEEDS)
    if threshold == "policy":
        if not args.branch:
            raise TinyexitError("--threshold policy is for --branch (exit heads: pass the integer)")
        from tinyexit.intermittent.branch import threshold_from_policy
        threshold = threshold_from_policy(target)
        print(f"confidence threshold from {Run(target).policy_path}: max score >= {threshold} (calibrated for the "
              "exit heads: no guarantee for the shared branch)")
    if args.harvester is not None or any(getattr(args, k) is not None for k in ("capacitor", "seconds", "inferences")):
        return _harvested(args, target, out, grans, threshold)
    fan = [f"--{k}" for k in ("shards", "workers", "address") if getattr(args, k) is not None]
    if fan and args.branch:
        raise TinyexitError(f"{fan[0]} fans out host and emulated campaigns; the --branch campaign runs serially "
                            f"so far: drop it")
    if args.branch:
        from tinyexit.intermittent.branch import powerfail_branch
        if args.board and not args.emulate:
            raise TinyexitError("--board needs --emulate (the host campaign runs on this machine)")
        low = 0.5 if args.low_energy is None else args.low_energy
        if not 0.0 <= low <= 1.0:
            raise TinyexitError("--low-energy is a probability between 0 and 1")
        from tinyexit.intermittent.branch import plot_answers
        reports = powerfail_branch(target, out, cuts=args.cuts, seed=args.seed, granularities=grans,
                                   num_inputs=args.inputs, broken=args.broken, slots=slots, low_energy=low,
                                   emulate=args.emulate, board=args.board or "mps2-an386", threshold=threshold,
                                   runner=args.runner)
        if low > 0:
            print(f"figure: {plot_answers(reports, out / ('branch-answers' + ('-emulated' if args.emulate else '') + '.png'))}")
    elif args.emulate:
        if args.low_energy:
            raise TinyexitError("--low-energy runs in the host campaign only; drop --emulate (the emulated "
                                "firmware takes a low-energy point per boot through its mailbox, see emulated.py)")
        from tinyexit.intermittent.emulated_powerfail import powerfail_emulated
        reports = powerfail_emulated(target, out, board=args.board or "mps2-an386", cuts=args.cuts,
                                     seed=args.seed, granularities=grans, num_inputs=args.inputs,
                                     broken=args.broken, threshold=threshold, slots=slots, runner=args.runner,
                                     nvm_region=region, rate_hz=args.rate, shards=args.shards,
                                     workers=args.workers, address=args.address, defer_results=args.defer_results)
    else:
        if args.board:
            raise TinyexitError("--board needs --emulate (the host campaign runs on this machine)")
        low = args.low_energy or 0.0
        if not 0.0 <= low <= 1.0:
            raise TinyexitError("--low-energy is a probability between 0 and 1")
        reports = powerfail(target, out, cuts=args.cuts, seed=args.seed, granularities=grans,
                            num_inputs=args.inputs, broken=args.broken, threshold=threshold,
                            slots=slots, low_energy=low, shards=args.shards, workers=args.workers,
                            address=args.address)
    for r in reports:
        print(r.table())
        print()
    if args.json:
        write_json(args.json, [r.as_dict() for r in reports])
    ok = all(r.ok for r in reports)
    print("powerfail: " + ("every committed result equals the uninterrupted run" if ok else
                           "FAILED (see FAIL lines; rerun with the same --seed to replay)"))
    return 0 if ok else 1


def _harvested(args: argparse.Namespace, target: Path, out: Path, grans: list[str], threshold) -> int:
    """`--harvester`: the emulated board powered from a capacitor (intermittent/harvested_runs.py)."""
    from tinyexit.boards import load_board
    from tinyexit.errors import TinyexitError
    from tinyexit.intermittent.energy import EnergyModel
    from tinyexit.intermittent.harvest import parse_harvester
    from tinyexit.intermittent.harvested_runs import parse_config, plot_comparison, run_configs, table
    from tinyexit.io import write_json
    from tinyexit.units import parse_quantity

    if args.harvester is None:
        given = next(k for k in ("capacitor", "seconds", "inferences") if getattr(args, k) is not None)
        raise TinyexitError(f"--{given} is for a harvested campaign; add --harvester constant|solar|rf|FILE.csv")
    if not args.emulate:
        raise TinyexitError("--harvester powers the emulated board; add --emulate (and --board nrf52840)")
    trace = parse_harvester(args.harvester)
    cap = parse_quantity(args.capacitor, "F", what="--capacitor") if args.capacitor is not None else None
    if cap is not None and cap <= 0:
        raise TinyexitError(f"--capacitor {args.capacitor}: give a capacitance above 0 (e.g. 470uF)")
    if args.seconds is not None and args.seconds <= 0:
        raise TinyexitError(f"--seconds {args.seconds:g}: give simulated seconds above 0")
    if args.inferences is not None and args.inferences < 1:
        raise TinyexitError(f"--inferences {args.inferences}: at least 1")
    if args.threshold is not None and not args.branch:
        raise TinyexitError("--threshold in a harvested campaign sets the shared branch's confidence mode; add "
                            "--branch")
    for flag in ("broken", "low_energy", "runner", "shards"):
        if getattr(args, flag):
            raise TinyexitError(f"--{flag.replace('_', '-')} is not for a harvested campaign; drop it")
    board = load_board(args.board or "nrf52840", emulate=True)
    EnergyModel.from_board(board, capacitor_f=cap)     # the board has an energy section and the levels agree
    configs = [g for g in grans] + (["branch"] if args.branch else [])
    for c in configs:
        parse_config(c)
    if args.branch:
        from tinyexit.intermittent.branch import branch_dir_of
        branch_dir_of(target)
    inferences = args.inferences if args.inferences is not None or args.seconds is not None else 10
    results = run_configs(target, out, configs, workers=args.workers or 1, address=args.address, board=board.name,
                          harvester=args.harvester, capacitor_f=cap, num_inputs=args.inputs, inferences=inferences,
                          seconds=args.seconds, seed=args.seed, nvm_region=_region(args.nvm_region, True),
                          slots=_slots(args.slots, True) if args.slots else None, threshold=threshold)
    print(f"{board.name} (emulated) under {trace.name}, capacitor "
          f"{(cap or board.energy.capacitor_f) * 1e6:g} uF:")
    print(table(results))
    for r in results:
        print(f"figure: {r['png']}")
    if len(results) > 1:
        print(f"figure: {plot_comparison(results, out / 'harvested.png', title=trace.name)}")
    if args.json:
        write_json(args.json, [{k: v for k, v in r.items() if k != "series"} for r in results])
    ok = all(r["ok"] for r in results)
    print("powerfail: " + ("every committed result equals the uninterrupted run" if ok else
                           "FAILED: " + "; ".join(f for r in results for f in r["failures"][:3])))
    return 0 if ok else 1


def _slots(text: str, emulate: bool) -> int | str:
    from tinyexit.errors import TinyexitError
    if text == "fit":
        if not emulate:
            raise TinyexitError("--slots fit fills the emulated board's NVM region; add --emulate (or give a number)")
        return "fit"
    try:
        n = int(text)
    except ValueError:
        raise TinyexitError(f"--slots {text!r}: a number of slots (at least 2) or 'fit'") from None
    if n < 2:
        raise TinyexitError(f"--slots {n}: at least 2 (a single slot loses the checkpoint a cut tears)")
    return n


def _region(text: str | None, emulate: bool) -> int | str | None:
    from tinyexit.boards import parse_size
    from tinyexit.errors import TinyexitError
    if text is None or text == "max":
        if text and not emulate:
            raise TinyexitError("--nvm-region is for the emulated board; add --emulate")
        return text
    if not emulate:
        raise TinyexitError("--nvm-region is for the emulated board; add --emulate")
    try:
        return parse_size(text)
    except ValueError:
        raise TinyexitError(f"--nvm-region {text!r}: bytes (e.g. 262144 or 256K) or 'max'") from None
