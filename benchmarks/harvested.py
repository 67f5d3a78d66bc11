"""What users compare under harvested power (issue 16, part 4): the default KWS run on the emulated nRF52840
powered from a capacitor that one harvester trace charges, for: no checkpoints, per-layer, every N layers,
just-in-time (when the runtime has the `jit` granularity), the energy-adaptive shared exit branch (RUN/branch,
at the board's warning level and at a lower one), and the FRAM board's configurations when its board file
exists -- against continuous power. Each configuration is one Ray task (harvested_runs.run_configs).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/harvested.py [--run RUN] [--work DIR] [--harvester rf]
        [--capacitor 2.2mF] [--inferences 50] [--workers 2]

RUN must not be written into: without RUN/branch it is copied to WORK/run and `tinyexit branch` runs there.
Prints a table (inferences per harvested mJ, latency median/p90/max, accuracy, exits taken, flash erases per
inference; continuous power's inferences per mJ beside it), the issue's goal check, and writes
WORK/harvested.json and WORK/harvested.png (voltage over time per configuration and a bar chart)."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tinyexit.intermittent.harvested_runs import jit_available, plot_comparison, run_configs, table
from tinyexit.io import write_json

REPO = Path(__file__).resolve().parents[1]


def with_branch(run: Path, work: Path) -> Path:
    if (run / "branch" / "manifest.json").is_file():
        return run
    copy = work / "run"
    if not (copy / "branch" / "manifest.json").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("powerfail", "bench", "branch"))
        subprocess.run([sys.executable, "-m", "tinyexit", "branch", str(copy), "--head-epochs", "0"], check=True)
    return copy


def default_configs() -> list[str]:
    configs = (["none", "layer", "layers:4"] + (["jit"] if jit_available() else [])
               + ["branch", "branch:2.0V", "branch/layers:4", "branch/none"])
    if (REPO / "boards" / "nrf52840-fram.yaml").is_file():
        configs += ["layer@nrf52840-fram"] + (["jit@nrf52840-fram"] if jit_available() else [])
    return configs


def goal(results: list[dict]) -> str:
    by = {r["config"]: r for r in results}
    base = by.get("layer")
    lines = []
    for name in [c for c in by if c.startswith("branch") and "@" not in c]:
        b = by[name]
        stopped = [r["config"] for r in (base, b) if r and r["stopped"]]
        if not base or not base["inferences_per_mj"] or stopped:
            lines.append(f"goal ({name} vs layer): not comparable ({', '.join(stopped) or 'layer'} stopped before "
                         f"its inferences were done)")
            continue
        ratio = b["inferences_per_mj"] / base["inferences_per_mj"]
        da = (None if b["accuracy"] is None or base["accuracy"] is None
              else 100 * (base["accuracy"] - b["accuracy"]))
        met = ratio >= 1.5 and da is not None and da <= 2.0
        own = (b["continuous"] or {}).get("accuracy")
        lines.append(f"goal ({name} vs layer): {ratio:.2f}x the inferences per harvested mJ (goal >= 1.5x), "
                     f"accuracy {'-' if da is None else f'{-da:+.1f}'} points (goal within 2): "
                     + ("MET" if met else "NOT MET")
                     + ("" if own is None or b["accuracy"] is None else
                        f" [the branch on continuous power, same inputs: {100 * own:.1f} %, under harvest "
                        f"{100 * (b['accuracy'] - own):+.1f} points]"))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "kws-default"))
    ap.add_argument("--work", default="build/bench-harvested")
    ap.add_argument("--harvester", default="rf", help="rf (bursty, seeded), solar, constant[:P] or FILE.csv")
    ap.add_argument("--capacitor", default="2.2mF", help="capacitor (default 2.2mF; the board file's is 470uF)")
    ap.add_argument("--inferences", type=int, default=50)
    ap.add_argument("--inputs", type=int, default=50, help="labelled test inputs (round robin)")
    ap.add_argument("--configs", default=None, help="comma-separated (default: all that exist)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--address", default=None)
    args = ap.parse_args()
    from tinyexit.units import parse_quantity
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = with_branch(Path(args.run), work)
    configs = args.configs.split(",") if args.configs else default_configs()
    cap = parse_quantity(args.capacitor, "F", what="--capacitor")
    t0 = time.monotonic()
    results = run_configs(run, work, configs, workers=args.workers, address=args.address, board="nrf52840",
                          harvester=args.harvester, capacitor_f=cap, num_inputs=args.inputs,
                          inferences=args.inferences)
    wall = time.monotonic() - t0
    print(f"nrf52840 (emulated, Cortex-M4 kernels) under {results[0]['trace']}, capacitor {cap * 1e6:g} uF, "
          f"{args.inferences} inferences per configuration over {args.inputs} labelled test inputs "
          f"({wall:.0f} s wall, {args.workers} workers)")
    print(table(results))
    print(goal(results))
    wrong = sum(r["wrong"] + r["lost_checkpoints"] for r in results)
    print(f"wrong results + lost checkpoints over all configurations: {wrong}")
    write_json(work / "harvested.json", {"harvester": args.harvester, "capacitor_f": cap, "wall_s": wall,
                                         "goal": goal(results),
                                         "results": [{k: v for k, v in r.items() if k != "series"}
                                                     for r in results]})
    print(f"wrote {work / 'harvested.json'} and {plot_comparison(results, work / 'harvested.png', results[0]['trace'])}")
    return 0 if wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
