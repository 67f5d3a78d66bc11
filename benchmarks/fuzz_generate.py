"""Fuzz `tinyexit generate` with mutants of the conformance models and count the verdicts.

    .venv/bin/python benchmarks/fuzz_generate.py --count 10000 [--minutes 20] [--seed 13] [--json out.json]

Mutants: bit flips, truncations, overwritten offsets, and one real field changed in place (tests/codegen/_fuzz.py,
which walks the flatbuffer without tinyexit). Each goes through the generate API (tflite_micro in generate's
child process); a generated library is compiled for the host with -Wall -Wextra -Werror and compared with
tflite_micro (in a child) on random inputs; a refusal must be one printable line of at most 300 characters,
exit status 2 and one line from the CLI, with nothing left behind. Prints the count per verdict and every
defect; exits 1 when there is a defect.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.codegen._fuzz import HostBuilds, Mutator, judge  # noqa: E402

SEEDS = ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000, help="mutants to try (default 10000)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--conformance", default=str(REPO.parent / "shared" / "conformance"))
    ap.add_argument("--json", default=None, help="write counts and defects here")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="save the mutants that are defects or that tflite_micro refuses or crashes on here")
    args = ap.parse_args()

    import numpy as np

    seeds = {}
    for name in SEEDS:
        p = Path(args.conformance) / name
        if not p.is_file():
            print(f"missing seed model {p}", file=sys.stderr)
            return 2
        seeds[name] = p.read_bytes()
    mutators = {n: Mutator(b) for n, b in seeds.items()}
    names = sorted(mutators)
    rng = np.random.default_rng(args.seed)
    counts: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    defects, examples = [], {}
    t0 = time.time()
    done = 0
    with tempfile.TemporaryDirectory(prefix="tinyexit-fuzz-") as tmp:
        builds = HostBuilds(Path(tmp))
        for i in range(args.count):
            if args.minutes is not None and time.time() - t0 > args.minutes * 60:
                break
            name = names[i % len(names)]
            desc, data = mutators[name].mutate(rng)
            kernels = ("reference", "cortex_m4")[(i // len(names)) % 2]
            v = judge(data, Path(tmp) / "mutant", rng, builds, kernels=kernels)
            counts[v.verdict] += 1
            by_kind[v.verdict][_kind(desc)] += 1
            examples.setdefault(v.verdict, f"{name}: {desc}: {v.detail[:200]}")
            if v.defect:
                defects.append({"i": i, "seed": name, "mutation": desc, "kernels": kernels, "verdict": v.verdict,
                                "detail": v.detail})
                print(f"DEFECT #{i} {name} [{desc}] ({kernels}): {v.verdict}\n  {v.detail[-800:]}", flush=True)
            if args.keep and (v.defect or "tflm" in v.verdict):
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"{i}-{v.verdict.replace(' ', '_').replace(',', '').replace(':', '')}.tflite").write_bytes(data)
                (keep / f"{i}.txt").write_text(f"{name} [{desc}] ({kernels}): {v.verdict}\n{v.detail}\n")
            done += 1
            if done % 200 == 0:
                print(f"{done} mutants, {time.time() - t0:.0f} s: {dict(counts)}", flush=True)
    elapsed = time.time() - t0
    print(f"\n{done} mutants of {', '.join(SEEDS)} (seed {args.seed}) in {elapsed:.0f} s "
          f"({elapsed / max(done, 1) * 1000:.0f} ms each)")
    for verdict, n in sorted(counts.items(), key=lambda kv: (kv[0].startswith("defect"), kv[0])):
        print(f"  {verdict:<28} {n:>6}   e.g. {examples[verdict][:150]}")
    print(f"  {'defects':<28} {sum(n for v, n in counts.items() if v.startswith('defect')):>6}")
    if args.json:
        Path(args.json).write_text(json.dumps({"mutants": done, "seconds": round(elapsed, 1), "seed": args.seed,
                                               "counts": dict(counts),
                                               "by_mutation": {k: dict(c) for k, c in by_kind.items()},
                                               "defects": defects}, indent=2) + "\n")
    return 1 if defects else 0


def _kind(desc: str) -> str:
    """The mutation's kind for the per-kind table: 'bit flips', 'truncated', 'offset', or the field's name."""
    for prefix in ("bit flips", "truncated", "offset"):
        if desc.startswith(prefix):
            return prefix
    head = desc.split(":")[0].split(" = ")[0]
    words = [w for w in head.split() if not w.isdigit()]
    return " ".join(w.split("[")[0] for w in words)


if __name__ == "__main__":
    sys.exit(main())
