"""Flash lifetime of the checkpoint log on the emulated nRF52840 (issue 16): for result-only, just-in-time,
just-in-time with deferred results and per-layer checkpoints over all the flash the image leaves free (a log with
packed result records), an emulated cut campaign (cuts, wrong, lost, re-deliveries), the instructions per
inference and the wear on continuous power (one boot of many inferences: page erases per inference, per page,
lifetime at 1 Hz, region needed for 10 years); then the same log under a harvester trace (erases per inference
and the lifetime at the trace's own inference rate and at 1 Hz).

    PYTHONPATH=$PWD python benchmarks/flash_lifetime.py RUN [--cuts 200] [--harvester rf] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODES = {"result-only": ("none", False), "jit": ("jit", False), "jit-deferred": ("jit", True), "per-layer": ("layer", False)}


def campaign(run: Path, out: Path, mode: str, cuts: int) -> dict:
    from tinyexit.intermittent.emulated_powerfail import powerfail_emulated
    gran, defer = MODES[mode]
    t0 = time.monotonic()
    r = powerfail_emulated(run, out / mode, board="nrf52840", cuts=cuts, seed=1, granularities=[gran], num_inputs=2,
                           slots="fit", nvm_region="max", defer_results=defer, shards=1, workers=1)[0]
    print(r.table(), flush=True)
    d = r.as_dict()
    w = r.wear
    return {"mode": mode, "cuts": r.cuts, "cuts_in_commits": r.cuts_in_commits, "wrong": r.wrong_results,
            "lost": r.lost_checkpoints, "crashes": r.crashes, "ok": r.ok, "deliveries": r.deliveries,
            "redelivered": r.duplicate_deliveries, "cut_between_delivery_and_record": r.delivered_not_durable,
            "instructions_per_inference": r.instructions_per_inference,
            "instructions_per_inference_none": r.instructions_per_inference_baseline,
            "overhead_percent": d["checkpoint_overhead_percent"],
            "nvm_bytes_per_inference": r.nvm_bytes_per_inference,
            "erases_per_inference": w.erases_per_inference, "erases_per_page_per_inference":
            w.max_erases_per_page_per_inference, "lifetime_years_at_1hz": w.lifetime_years(1.0),
            "region_bytes": w.region_bytes, "spread_pages": w.spread_pages,
            "region_bytes_for_10_years_at_1hz": w.region_bytes_for(10.0, 1.0),
            "wear_inferences": w.inferences, "seconds": time.monotonic() - t0}


def harvested(run: Path, out: Path, harvester: str, config: str, region: int, inferences: int) -> dict:
    """The log under a harvester trace (the exit-head pipeline of powerfail --harvester, over `region` bytes)."""
    from tinyexit.boards import load_board, with_nvm_region
    from tinyexit.intermittent.energy import EnergyModel
    from tinyexit.intermittent.harvest import parse_harvester
    from tinyexit.intermittent.harvested import exit_heads_setup, run_harvested
    from tinyexit.intermittent.harvested_runs import parse_config
    from tinyexit.intermittent.nvm_events import SECONDS_PER_YEAR, FlashWear, read_erases
    cfg, _ = parse_config(config)
    b = with_nvm_region(load_board("nrf52840", emulate=True), region)
    work = out / f"harvest-{harvester.split(':')[0]}-{config}"
    setup = exit_heads_setup(run, work, b, num_inputs=4, slots="fit")
    model = EnergyModel.from_board(b, warn_v=cfg.warn_v, cycles_per_instruction=setup.cycles_per_instruction)
    rep, _ = run_harvested(setup.board, model, parse_harvester(harvester), cfg, num_inputs=4, expected=setup.expected,
                           labels=setup.labels, inferences=inferences)
    page, pages = b.nvm.page_size, region // b.nvm.page_size
    t = setup.board.t
    per_page = read_erases(t.psram, pages)   # before the next boot resets the counters
    largest = -(-(64 + t.uninterrupted(0, 0x7F000000, cfg.granularity).stats["max_payload"]) // page)
    wear = FlashWear(rep.inferences, [], page, pages, 0, b.nvm.endurance, region_bytes=region, log=True,
                     steady_erases=rep.flash_erases, spread_pages=pages - largest + 1, largest_pages=largest)
    rate = rep.inferences / rep.seconds if rep.seconds else 0.0
    print(f"{harvester} {config}: {rep.line()}", flush=True)
    return {"harvester": harvester, "config": config, "inferences": rep.inferences, "boots": rep.boots,
            "cuts": rep.cuts, "wrong": rep.wrong, "lost": rep.lost_checkpoints, "simulated_s": rep.seconds,
            "inference_rate_hz": rate, "flash_erases": rep.flash_erases,
            "erases_per_inference": wear.erases_per_inference,
            "erases_per_page_per_inference": wear.max_erases_per_page_per_inference,
            "lifetime_years_at_trace_rate": wear.lifetime_years(rate) if rate else None,
            "lifetime_years_at_1hz": wear.lifetime_years(1.0), "region_bytes": region,
            # measured: the most erased page (a boot's first commit erases the page after the newest record
            # whatever it reads; boots that commit nothing erase that same page again)
            "max_erases_of_a_page": max(per_page), "pages_erased": sum(1 for n in per_page if n),
            "worst_page_lifetime_years_at_trace_rate": (b.nvm.endurance * rep.inferences / (max(per_page) * rate *
                                                        SECONDS_PER_YEAR) if max(per_page) and rate else None),
            "region_bytes_for_10_years_at_trace_rate": wear.region_bytes_for(10.0, rate) if rate else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--cuts", type=int, default=200)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--harvester", action="append", default=[], help="e.g. rf or solar (repeatable)")
    ap.add_argument("--harvest-configs", default="jit,layer")
    ap.add_argument("--harvest-inferences", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("build/flash_lifetime"))
    ap.add_argument("--region", type=int, default=None, help="bytes of the log under a harvester (default: the "
                                                             "modes' region, all the flash the image leaves free)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"run": str(args.run), "modes": [], "harvested": []}
    for mode in filter(None, args.modes.split(",")):
        res["modes"].append(campaign(args.run, args.out, mode, args.cuts))
        (args.out / "flash_lifetime.json").write_text(json.dumps(res, indent=1))
    region = args.region or next((m["region_bytes"] for m in res["modes"]), None)
    for h in args.harvester:
        for c in args.harvest_configs.split(","):
            res["harvested"].append(harvested(args.run, args.out, h, c, region, args.harvest_inferences))
            (args.out / "flash_lifetime.json").write_text(json.dumps(res, indent=1))
    print("\nmode           cuts  in-commit wrong lost redeliv  instr/inf    overhead  erases/inf  per page/inf  "
          "years@1Hz  region for 10 y")
    for m in res["modes"]:
        life = m["lifetime_years_at_1hz"]
        need = m["region_bytes_for_10_years_at_1hz"]
        print(f"{m['mode']:<14}{m['cuts']:>5}{m['cuts_in_commits']:>10}{m['wrong']:>6}{m['lost']:>5}"
              f"{m['redelivered']:>8}{m['instructions_per_inference']:>12,.0f}{m['overhead_percent']:>10.2f} %"
              f"{m['erases_per_inference']:>11.4g}{m['erases_per_page_per_inference']:>14.3g}"
              f"{'unbounded' if life is None else f'{life:,.3g}':>11}  {need:,}")
    for h in res["harvested"]:
        print(f"{h['harvester']} {h['config']}: {h['inferences']} inferences in {h['simulated_s']:.0f} s simulated "
              f"({h['inference_rate_hz']:.3g} Hz), {h['boots']} boots, wrong {h['wrong']}, lost {h['lost']}; "
              f"{h['erases_per_inference']:.3g} erases/inference -> lifetime "
              f"{h['lifetime_years_at_trace_rate'] or float('inf'):,.3g} years at the trace's rate, "
              f"{h['lifetime_years_at_1hz'] or float('inf'):,.3g} at 1 Hz if spread over the log; measured: "
              f"{h['pages_erased']} pages erased, the most {h['max_erases_of_a_page']} times -> "
              f"{h['worst_page_lifetime_years_at_trace_rate'] or float('inf'):,.3g} years at the trace's rate")
    print(f"\nfigures: {args.out / 'flash_lifetime.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
