"""What one charge of the capacitor buys on the nRF52840, under each built-in harvester.

    PYTHONPATH=. .venv/bin/python benchmarks/energy_model.py [--capacitor 470uF] [--boots 200]
                                                             [--png energy_model.png] [--json out.json]

For the board file's energy figures (boards/nrf52840.yaml) and the capacitor, prints: the energy between turn-on
and turn-off, the instructions one charge runs with no harvest, the cost of a page erase and of a word write;
then for each harvester (constant, solar from 8 h after sunrise, rf) BOOTS boots of endless work from turn-on
to the cut, each followed by the recharge to turn-on: the mean harvested power, instructions per boot and
recharge times (median, mean, max). Everything is the energy model (tinyexit/intermittent/energy.py), no emulator.
The PNG is a few seconds of a synthetic checkpointed inference (4.5 M instructions, one page erase, two commits of
300 words) under the rf harvester: illustrative timeline, not a measured one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyexit.boards import load_board  # noqa: E402
from tinyexit.intermittent.energy import EnergyModel, Work, simulate, timeline  # noqa: E402
from tinyexit.intermittent.energy_plot import plot_campaign  # noqa: E402
from tinyexit.intermittent.harvest import parse_harvester  # noqa: E402
from tinyexit.units import parse_quantity  # noqa: E402

HARVESTERS = ["constant", "solar:start=28800", "rf"]   # solar: from 8 h after sunrise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="nrf52840")
    ap.add_argument("--capacitor", default=None, help="e.g. 100uF (default: the board file's)")
    ap.add_argument("--boots", type=int, default=200)
    ap.add_argument("--png", default="energy_model.png")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    board = load_board(args.board)
    cap = parse_quantity(args.capacitor, "F", "--capacitor") if args.capacitor else None
    m = EnergyModel.from_board(board, capacitor_f=cap)
    per_instr = m.run_w / m.clock_hz * m.cycles_per_instruction
    out = {"board": board.name, "capacitor_f": m.capacitor_f, "usable_j": m.usable_j,
           "instructions_per_charge_no_harvest": int(m.usable_j / per_instr),
           "page_erase_j": m.erase_w * m.erase_s, "word_write_j": m.write_w * m.write_s,
           "warn_reserve_j": m.reserve_j(), "harvesters": {}}
    print(f"{board.name}: C = {m.capacitor_f * 1e6:g} uF, on {m.on_v} V, warn {m.warn_v} V, off {m.off_v} V; "
          f"run {m.run_w * 1e3:.2f} mW at {m.clock_hz / 1e6:g} MHz, 1 cycle/instruction")
    print(f"  one charge: {m.usable_j * 1e6:.0f} uJ = {out['instructions_per_charge_no_harvest']:,} instructions "
          f"with no harvest ({m.usable_j / m.run_w * 1e3:.1f} ms)")
    print(f"  page erase {out['page_erase_j'] * 1e6:.0f} uJ ({m.erase_s * 1e3:g} ms), word write "
          f"{out['word_write_j'] * 1e9:.0f} nJ; warning reserve ({m.warn_v} V -> {m.off_v} V) "
          f"{out['warn_reserve_j'] * 1e6:.0f} uJ = {int(out['warn_reserve_j'] / out['word_write_j']):,} word writes")
    print(f"\n  {'harvester':<36} {'mean in':>9} {'instr/boot':>12} {'recharge median':>16} {'mean':>9} "
          f"{'max':>9} {'sim. time':>10} {'wall':>6}")
    for spec in HARVESTERS:
        trace, t0 = parse_harvester(spec), 0.0
        start = time.perf_counter()
        camp = simulate(m, trace, lambda i, prev: [Work(10 ** 12)] if i < args.boots else None, t=t0)
        wall = time.perf_counter() - start
        boots, offs = camp.boots, [r.off_s for r in camp.recharges if r.off_s is not None]
        span = camp.t_end - t0
        row = {"start_s": t0, "mean_harvest_w": trace.energy(t0, camp.t_end) / span if span else 0.0,
               "instructions_per_boot_mean": statistics.mean(b.instructions for b in boots),
               "recharge_s_median": statistics.median(offs) if offs else None,
               "recharge_s_mean": statistics.mean(offs) if offs else None, "recharge_s_max": max(offs, default=None),
               "simulated_s": span, "boots": len(boots), "stopped": camp.stopped, "wall_s": wall}
        out["harvesters"][str(trace)] = row
        print(f"  {str(trace):<36} {row['mean_harvest_w'] * 1e3:>7.3f}mW {row['instructions_per_boot_mean']:>12,.0f} "
              f"{row['recharge_s_median'] or 0:>15.3f}s {row['recharge_s_mean'] or 0:>8.3f}s "
              f"{row['recharge_s_max'] or 0:>8.3f}s {span:>9.1f}s {wall:>5.2f}s"
              + (f"  stopped: {camp.stopped}" if camp.stopped else ""))

    trace = parse_harvester("rf")
    inference = timeline([(200_000, "erase", 1), (1_500_000, "write", 300), (1_500_000, "commit"),
                          (3_000_000, "write", 300), (3_000_000, "commit"), (4_500_000, "result")], 4_500_000)
    camp = simulate(m, trace, [inference] * 12)
    plot_campaign(camp, m, trace, args.png, title=f"{board.name}, {m.capacitor_f * 1e6:g} uF, {trace}: "
                  f"a synthetic checkpointed inference, 12 boots (illustrative)")
    print(f"\n  wrote {args.png}: {camp.summary()['boots']} boots, {camp.summary()['cuts']} cuts, "
          f"{camp.t_end:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
