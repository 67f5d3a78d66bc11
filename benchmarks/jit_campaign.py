"""Just-in-time checkpoints on the emulated nRF52840 (Cortex-M4 kernels, exact instruction counts): overhead under
continuous power (none vs jit vs layer vs every N layers), the JIT commit's cost (instructions, NVM time, energy by
energy.py) on the internal flash and on an SPI FRAM, the power-fail warning level its reserve needs on the
capacitor, page erases per inference and the flash lifetime at 1 Hz with jit (result records + JIT commits at a
given warning rate), and power-failure campaigns whose cuts come after the warning (wrong results).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/jit_campaign.py [--run runs/kws-default] [--cuts 10000]
        [--warn-rate 0.1] [--capacitor 470uF] [--every 4] [--work DIR] [--skip-campaigns] [--skip-wear]

The run is copied to WORK/run (read-only source). Figures: WORK/jit_campaign.json. A campaign takes about one
second per cut on one core: 10,000 cuts is hours (fan out with tinyexit.intermittent.fanout for more).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyexit.boards import load_board, with_nvm_region  # noqa: E402
from tinyexit.intermittent import prepare_library, random_inputs  # noqa: E402
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign  # noqa: E402
from tinyexit.intermittent.energy import EnergyModel  # noqa: E402
from tinyexit.intermittent.host import Granularity  # noqa: E402
from tinyexit.intermittent.nvm_events import (SECONDS_PER_YEAR, checkpoint_overhead, measure_wear,  # noqa: E402
                                              nvm_op_instructions, nvm_trace, read_erases, reset_erase_counters)
from tinyexit.io import write_json  # noqa: E402
from tinyexit.units import parse_quantity  # noqa: E402

FRACTIONS = (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)   # where in the inference the warning comes


def overhead(target: EmulatedTarget, every: int) -> dict:
    """Continuous power, no warning: instructions of one inference per granularity, with the emulated NVM
    operations' instructions (which a real NVMC replaces by its time) apart, and the NVM time."""
    grans = ["jit", "layer", f"layers:{every}", f"jit:layers:{every}"]
    rows = checkpoint_overhead(target, grans)
    for name, r in rows.items():
        g = Granularity.parse(name)
        r["nvm_op_instructions"] = nvm_op_instructions(target, 0, g)
        tr = nvm_trace(target, 0, g)
        r["nvm_seconds"] = tr.nvm_seconds()
        r["erases"], r["words_written"] = tr.erases, tr.words_written
    base = rows["none"]
    for r in rows.values():
        cpu, cpu0 = r["instructions"] - r["nvm_op_instructions"], base["instructions"] - base["nvm_op_instructions"]
        r["cpu_overhead_percent"] = 100.0 * (cpu - cpu0) / cpu0
        r["nvm_seconds_extra"] = r["nvm_seconds"] - base["nvm_seconds"]
    return rows


def jit_commit_cost(target: EmulatedTarget, model: EnergyModel, total: int) -> dict:
    """For warnings at FRACTIONS of the inference: the JIT commit (first commit after the warning): instructions,
    words written, page erases, NVM time, and the energy from the warning until the commit is durable (the
    reserve the warning level must leave), by the energy model (instructions at the run power, 1 cycle each, plus
    the NVM's own time and power)."""
    rows = []
    for f in FRACTIONS:
        at = int(total * f)
        tr = nvm_trace(target, 0, Granularity.parse("jit"), warn_at_instruction=at)
        ev = tr.events
        b = next(i for i, e in enumerate(ev) if e.kind == "commit_begin" and e.instructions >= at - tr.resolution)
        e_ = next(i for i in range(b, len(ev)) if ev[i].kind == "commit_end")
        inside = ev[b:e_ + 1]
        words = sum(x.nwords for x in inside if x.kind == "write")
        erases = sum(x.kind == "erase" for x in inside)
        instr = ev[e_].instructions - ev[b].instructions
        delay = ev[b].instructions - at
        nvm_s = erases * model.erase_s + words * model.write_s
        run_j = (instr + max(0, delay)) * model.cycles_per_instruction / model.clock_hz * model.run_w
        nvm_j = erases * model.erase_s * model.erase_w + words * model.write_s * model.write_w
        rows.append({"fraction": f, "warn_at": at, "delay_instructions": delay, "commit_instructions": instr,
                     "words": words, "erases": erases, "nvm_seconds": nvm_s, "energy_j": run_j + nvm_j,
                     "resolution": tr.resolution})
    return {"positions": rows, "worst_energy_j": max(r["energy_j"] for r in rows),
            "worst_words": max(r["words"] for r in rows), "worst_instructions": max(r["commit_instructions"] for r in rows)}


def warn_levels(board, model: EnergyModel, energy_j: float) -> dict:
    e = board.energy
    n = int(round((e.warn_max_v - e.warn_min_v) / e.warn_step_v)) + 1
    levels = [round(e.warn_min_v + k * e.warn_step_v, 3) for k in range(n)]
    return {"reserve_needed_j": energy_j, "capacitor_f": model.capacitor_f,
            "warn_level_v": model.warn_level_for(energy_j, levels),
            "reserve_at_level_j": {str(v): model.reserve_j(v) for v in levels}}


def wear_with_warnings(target: EmulatedTarget, rate: float, inferences: int) -> dict:
    """Page erases over consecutive inferences of a log (after one turn), a warning half-way through every
    round(1/rate)-th inference (its JIT commit), as measure_wear does for the result records alone."""
    g = Granularity.parse("jit")
    pages = target.nvm_size // target.board.nvm.page_size
    first = target.uninterrupted(0, 0x58000000, g)
    period = max(1, round(1 / rate)) if rate > 0 else 0
    target.erase_nvm()
    warm = pages   # one turn at least (a record is at least a page)
    for k in range(warm + inferences):
        if k == warm:
            reset_erase_counters(target.psram)
        warn = first.instructions // 2 if period and k % period == 0 else None
        target.mailbox(0, 0x58000001 + k, g, warn_at_instruction=warn)
        b = target.boot()
        if b.exit_code != 0:
            raise RuntimeError(b.text[-300:])
    erases = read_erases(target.psram, pages)
    worst = max(erases) / inferences
    endurance = target.board.nvm.endurance
    return {"warning_rate": rate, "inferences": inferences, "erases_per_inference": sum(erases) / inferences,
            "max_erases_per_page_per_inference": worst, "pages": pages,
            "lifetime_years_at_1hz": endurance / (worst * SECONDS_PER_YEAR) if worst and endurance else None}


def campaign(target: EmulatedTarget, gran: str, cuts: int, warn: float, work: Path) -> dict:
    t0 = time.monotonic()
    r = run_emulated_campaign(target, 4, cuts=cuts, seed=1, granularity=Granularity.parse(gran), warn=warn,
                              work_dir=work / f"campaign-{gran.replace(':', '')}")
    print(r.table(), flush=True)
    return {"granularity": gran, "cuts": r.cuts, "cuts_in_commits": r.cuts_in_commits, "wrong": r.wrong_results,
            "lost_checkpoints": r.lost_checkpoints, "crashes": r.crashes, "inferences": r.completed, "ok": r.ok,
            "seconds": time.monotonic() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "kws-default"))
    ap.add_argument("--cuts", type=int, default=10_000)
    ap.add_argument("--warn-rate", type=float, default=0.1, help="share of inferences warned (wear figure)")
    ap.add_argument("--wear-inferences", type=int, default=400)
    ap.add_argument("--capacitor", default=None, help="e.g. 470uF (default: the board file's)")
    ap.add_argument("--every", type=int, default=4, help="N of the layers:N fallback")
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-campaigns", action="store_true")
    ap.add_argument("--skip-wear", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="jit-campaign-"))
    run = work / "run"
    if not run.exists():
        shutil.copytree(args.run, run)
    cap = parse_quantity(args.capacitor, "F", "--capacitor") if args.capacitor else None
    out: dict = {"run": args.run, "work": str(work)}
    lib, pipe = prepare_library(run, work / "lib-m4", kernels=load_board("nrf52840").kernels)   # both boards'
    inputs = random_inputs(4, pipe.input_size, 0)
    for name in ("nrf52840", "nrf52840-fram"):
        board = load_board(name, emulate=True)
        fw = build_emulated(lib, pipe, inputs, board, work / name / "fw")
        t = EmulatedTarget(fw, work / name / "psram.img")
        model = EnergyModel.from_board(board, capacitor_f=cap)
        res: dict = {}
        t0 = time.monotonic()
        res["overhead"] = overhead(t, args.every)
        total = res["overhead"]["jit"]["instructions"]
        print(f"\n== {name}: continuous power, one inference ({time.monotonic() - t0:.0f} s)")
        print(f"{'granularity':<16}{'instructions':>14}{'overhead':>10}{'CPU only':>10}{'commits':>8}{'erases':>7}"
              f"{'NVM bytes':>10}{'NVM time s':>11}")
        for g, r in res["overhead"].items():
            print(f"{g:<16}{r['instructions']:>14,}{r['overhead_percent']:>9.2f}%{r['cpu_overhead_percent']:>9.2f}%"
                  f"{r['commits']:>8}{r['erases']:>7}{r['nvm_bytes']:>10,}{r['nvm_seconds']:>11.4f}")
        res["jit_commit"] = jit_commit_cost(t, model, total)
        print(f"\n   JIT commit by warning position (energy: warning -> commit durable, C = {model.capacitor_f * 1e6:g} uF)")
        for r in res["jit_commit"]["positions"]:
            print(f"   at {r['fraction']:.2f}: {r['commit_instructions']:>9,} instr (+{r['delay_instructions']:,} to "
                  f"the poll), {r['words']:>5} words, {r['erases']} erases, NVM {r['nvm_seconds'] * 1e3:8.3f} ms, "
                  f"{r['energy_j'] * 1e6:8.1f} uJ")
        res["warn"] = warn_levels(board, model, res["jit_commit"]["worst_energy_j"])
        lv = res["warn"]["warn_level_v"]
        print(f"   worst {res['jit_commit']['worst_energy_j'] * 1e6:.1f} uJ -> warning level "
              f"{'none in 1.7..2.8 V' if lv is None else f'{lv} V'} (reserve to {model.off_v} V)")
        if name == "nrf52840" and not args.skip_wear:
            region = (board.flash.size - fw.sizes.flash) // 4096 * 4096
            lfw = build_emulated(lib, pipe, inputs, with_nvm_region(board, region), work / name / "fw-log",
                                 slots="fit")
            lt = EmulatedTarget(lfw, work / name / "psram-log.img")
            w = measure_wear(lt, Granularity.parse("jit"))
            res["wear_jit_no_warning"] = w.as_dict()
            print(f"\n   {w.line()}")
            res["wear_jit_warned"] = wear_with_warnings(lt, args.warn_rate, args.wear_inferences)
            d = res["wear_jit_warned"]
            print(f"   with a warning in {100 * args.warn_rate:g} % of inferences: {d['erases_per_inference']:.3f} "
                  f"erases/inference, max {d['max_erases_per_page_per_inference']:.4f}/page -> "
                  f"{d['lifetime_years_at_1hz']:.3g} years at 1 Hz ({d['pages']} pages)")
        if not args.skip_campaigns:
            print(f"\n   campaigns ({args.cuts} cuts each; warned boots cut after the warning)")
            grans = [("jit", 0.5), ("layer", 0.0)] if name == "nrf52840" else [("jit", 0.5)]
            res["campaigns"] = [campaign(t, g, args.cuts, w, work / name) for g, w in grans]
        out[name] = res
        write_json(work / "jit_campaign.json", out)
    print(f"\nfigures: {work / 'jit_campaign.json'}")
    print(json.dumps({k: v for k, v in out.items() if k in ("run", "work")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
