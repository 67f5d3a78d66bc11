"""Deferred results (TX_CKPT_DEFER_RESULTS, just-in-time) on the emulated nRF52840 with a model's log over all the
flash its image leaves free: cuts swept over the end of a boot, from just before the result's delivery to past the
end of its deferred commit (the power warning of the boot's end), then a boot of the same input without a cut.
Each cut after the delivery and before the commit's end breaks just-in-time's contract (the warning's reserve
must cover the commit): the result is recomputed and delivered again (the same bytes); after the commit's end the
next boot finds it done (delivered once). Never a wrong result, never an NVMC fault.

    PYTHONPATH=$PWD python benchmarks/deferred_commit_cuts.py RUN [--cuts 40] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> int:
    from tinyexit.boards import load_board, with_nvm_region
    from tinyexit.intermittent import prepare_library, random_inputs, slots
    from tinyexit.intermittent.emulated import DELIVERY, EmulatedTarget, build_emulated
    from tinyexit.intermittent.host import Granularity
    from tinyexit.intermittent.nvm_events import read_events
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--cuts", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("build/deferred_commit_cuts"))
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    b = load_board("nrf52840", emulate=True)
    lib, pipe = prepare_library(args.run, out, kernels=b.kernels)
    inputs = random_inputs(2, pipe.input_size, 3)
    fw = build_emulated(lib, pipe, inputs, b, out / "fw0", slots="fit", defer_results=True)
    region = (b.flash.size - fw.sizes.flash) // b.nvm.page_size * b.nvm.page_size
    fw = build_emulated(lib, pipe, inputs, with_nvm_region(b, region), out / "fw", slots="fit", defer_results=True)
    t = EmulatedTarget(fw, out / "psram.img")
    jit = Granularity.parse("jit")
    t.erase_nvm()
    t.calibrate()
    t.mailbox(0, 1, jit, count=3)        # a log in use: three results, the last committed at the boot's end
    assert t.boot().exit_code == 0
    start = t.snapshot()
    t.mailbox(0, 4, jit)
    probe = t.boot()
    ev = read_events(t.psram, tick_origin=t.tick_origin, instructions_per_tick=b.instructions_per_tick or 40)
    res = [e.instructions for e in ev if e.kind == "result"][-1]
    begin = [e.instructions for e in ev if e.kind == "commit_begin"][-1]
    end = [e.instructions for e in ev if e.kind == "commit_end"][-1]
    print(f"input id 4: delivered at ~{res:,} instructions, deferred commit {begin:,}..{end:,}, boot ends at "
          f"{probe.instructions:,} (event times +- {b.instructions_per_tick or 40:.0f})")
    lo, hi = max(1, res - 2000), min(probe.instructions - 1, end + 2000)
    rows = {"cuts": 0, "delivered": 0, "in_commit": 0, "redelivered": 0, "once": 0, "wrong": 0, "faults": 0}
    for k in range(args.cuts):
        limit = lo + (hi - lo) * k // max(1, args.cuts - 1)
        t.restore(start)
        t.mailbox(0, 4, jit)
        cut = t.boot(limit=limit)
        if not cut.cut:
            continue
        rows["cuts"] += 1
        m = DELIVERY.search(cut.text)
        delivered = m is not None and len(m.group(5)) == 2 * int(m.group(4))
        rows["delivered"] += delivered
        rows["in_commit"] += begin <= limit <= end
        again = t.boot()
        rec = slots.newest_valid(t.nvm_image(), t.slot_size, t.num_slots, t.log, t.fingerprint)
        if again.exit_code != 0:
            rows["faults"] += 1
            continue
        if (again.exit_index, again.output) != (probe.exit_index, probe.output) or not (rec and rec.input_id == 4):
            rows["wrong"] += 1
        if delivered:
            rows["redelivered" if again.boot != "done" else "once"] += 1
    print(f"{rows['cuts']} cuts from {lo:,} to {hi:,} ({rows['in_commit']} inside the deferred commit): "
          f"{rows['delivered']} after the delivery, of which {rows['once']} found done by the next boot (delivered "
          f"once) and {rows['redelivered']} recomputed and delivered again (cut before the commit ended); wrong "
          f"{rows['wrong']}, NVMC faults or crashes {rows['faults']}")
    return 0 if rows["wrong"] == rows["faults"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
