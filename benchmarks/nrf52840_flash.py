"""Power-failure campaigns on the emulated nRF52840 (Cortex-M4 kernels, NVMC rules, cuts after exact instruction
counts) with two checkpoint slots and with as many as fit in the flash the image leaves free: cuts, wrong results,
instructions per inference with and without checkpoints, NVMC busy time, page erases per inference and the flash
lifetime at 1 Hz.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/nrf52840_flash.py [--run runs/kws-default] [--cuts 50]
        [--granularity layer] [--work DIR]

The run is copied to WORK/run first (powerfail writes into its run folder). Writes WORK/nrf52840_flash.json.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from tinyexit.intermittent.emulated_powerfail import powerfail_emulated
from tinyexit.io import write_json

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "kws-default"))
    ap.add_argument("--cuts", type=int, default=50)
    ap.add_argument("--granularity", default="layer")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nrf52840-flash-"))
    run = work / "run"
    if not run.exists():
        shutil.copytree(args.run, run)
    rows = {}
    for name, region in (("2 slots", None), ("largest region", "max")):
        t0 = time.monotonic()
        [r] = powerfail_emulated(run, work / name.replace(" ", "-"), board="nrf52840", cuts=args.cuts,
                                 granularities=[args.granularity], num_inputs=4, nvm_region=region,
                                 slots="fit" if region else 2)
        print(f"== {name} ({time.monotonic() - t0:.0f} s)\n{r.table()}\n")
        rows[name] = r.as_dict()
    print(f"{'':16} {'cuts':>5} {'wrong':>5} {'slots':>5} {'region KiB':>10} {'erases/inf':>10} "
          f"{'max/page/inf':>12} {'lifetime 1 Hz (years)':>22}")
    for name, d in rows.items():
        print(f"{name:16} {d['cuts']:5d} {d['wrong']:5d} {d['slots']:5d} {d['nvm_region_bytes'] // 1024:10d} "
              f"{d['flash_erases_per_inference']:10.1f} {d['flash_max_erases_per_page_per_inference']:12.3f} "
              f"{d['flash_lifetime_years_at_1hz']:22.3g}")
    write_json(work / "nrf52840_flash.json", rows)
    print(f"figures: {work / 'nrf52840_flash.json'}")


if __name__ == "__main__":
    main()
