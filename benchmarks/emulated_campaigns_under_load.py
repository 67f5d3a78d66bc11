"""Emulated power-cut campaigns on a loaded machine: do emulator hiccups reach the verdicts?

    .venv/bin/python benchmarks/emulated_campaigns_under_load.py [--campaigns 6] [--cuts 25] [--load 6]
                                                                 [--json out.json]

Runs CAMPAIGNS emulated campaigns (the tests' stand-in model library, 2 inputs, mps2-an386, granularity units:1,
seeds 0..CAMPAIGNS-1) while LOAD busy-loop processes compete for the CPU (started and stopped here), and prints
the campaigns, inferences, boots, crashes, failures per kind, emulator retries and their reasons, and the
seconds. Issue 13, part 6: under load a campaign once reported a crash with status 0 and no output (the
harness had lost the UART output; see tinyexit/targets/uart_socket.py). A crash, an 'emulator' failure or an
aborted campaign here is a defect: the stand-in runtime is correct, so every inference must commit its result.
Exits 1 on a defect.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.intermittent._support import STANDIN_PIPELINE, make_standin, random_inputs  # noqa: E402
from tinyexit.errors import TinyexitError  # noqa: E402
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign  # noqa: E402
from tinyexit.intermittent.host import Granularity  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=6)
    ap.add_argument("--cuts", type=int, default=25, help="power cuts per campaign (default 25)")
    ap.add_argument("--load", type=int, default=6, help="busy-loop processes run meanwhile (default 6; 0: none)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    out = Path(tempfile.mkdtemp(prefix="tinyexit-load-"))
    inputs = random_inputs(2, 144, seed=21)
    fw = build_emulated(make_standin(out / "lib"), STANDIN_PIPELINE, inputs, "mps2-an386", out / "emu")
    target = EmulatedTarget(fw, out / "psram.img")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    totals = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    aborted = []
    t0 = time.monotonic()
    try:
        for seed in range(args.campaigns):
            try:
                r = run_emulated_campaign(target, len(inputs), cuts=args.cuts, seed=seed,
                                          granularity=Granularity.parse("units:1"))
            except TinyexitError as e:
                aborted.append(f"seed {seed}: {str(e).splitlines()[0]}")
                print(f"campaign seed {seed}: ABORTED: {aborted[-1]}", flush=True)
                continue
            totals.update(inferences=r.inferences, completed=r.completed, boots=r.boots, cuts=r.cuts,
                          crashes=r.crashes, retries=len(r.emulator_retries))
            kinds.update(f.kind for f in r.failures)
            reasons.update(x["reason"] for x in r.emulator_retries)
            print(f"campaign seed {seed}: {r.inferences} inferences, {r.boots} boots, {r.crashes} crashes, "
                  f"{len(r.failures)} failures, {len(r.emulator_retries)} emulator retries, ok {r.ok}", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    seconds = time.monotonic() - t0
    figures = {"campaigns": args.campaigns, "cuts_per_campaign": args.cuts, "load_processes": args.load,
               "cpus": os.cpu_count(), **totals, "failures_per_kind": dict(kinds), "aborted": aborted,
               "emulator_retry_reasons": dict(reasons), "seconds": round(seconds, 1)}
    print(f"\n{args.campaigns} campaigns x {args.cuts} cuts with {args.load} busy processes on {os.cpu_count()} "
          f"CPUs: {totals['inferences']} inferences ({totals['completed']} completed), {totals['boots']} boots, "
          f"{totals['crashes']} crashes, failures {dict(kinds) or 0}, aborted {len(aborted)}, emulator retries "
          f"{totals['retries']}{' ' + str(dict(reasons)) if reasons else ''}; {seconds:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if totals["crashes"] or kinds or aborted else 0


if __name__ == "__main__":
    sys.exit(main())
