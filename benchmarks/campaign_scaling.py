"""How power-failure campaigns scale on Ray (issue #16, part 5): the same sharded emulated campaign (same seed,
same shards, so the same cuts) with 1 worker and with W workers, wall time of each, the cost of one cut, the
speed-up, and from them the wall time of 1 M cuts on a cluster of N cores. Every report must be ok (0 wrong) and
the two reports equal.

    python benchmarks/campaign_scaling.py RUN_OR_TFLITE [--board nrf52840] [--cuts 200] [--shards 8]
        [--workers 2] [--granularity layer] [--cluster-cores 64] [--json OUT]

Wall times on a shared machine are noisy: run it on an otherwise idle machine and read the speed-up as measured
here, on this machine's cores."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyexit.errors import TinyexitError  # noqa: E402
from tinyexit.intermittent.emulated_powerfail import powerfail_emulated  # noqa: E402

SKIP = {"seconds", "wall_seconds", "seconds_per_cut", "nvm_trace", "failures"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target")
    ap.add_argument("--board", default="nrf52840")
    ap.add_argument("--cuts", type=int, default=200)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--inputs", type=int, default=2)
    ap.add_argument("--granularity", default="layer")
    ap.add_argument("--cluster-cores", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="tinyexit-scaling-") as tmp:
        for w in (1, a.workers):
            t0 = time.monotonic()
            (r,) = powerfail_emulated(a.target, Path(tmp) / f"w{w}", board=a.board, cuts=a.cuts, seed=0,
                                      granularities=[a.granularity], num_inputs=a.inputs, wear=False,
                                      shards=a.shards, workers=w)
            wall = time.monotonic() - t0
            rows[w] = {"report": r, "wall_s": wall, "campaign_wall_s": r.wall_seconds, "cuts": r.cuts,
                       "worker_s_per_cut": r.seconds / r.cuts, "ok": r.ok}
            print(f"{w} worker(s): {r.cuts} cuts in {r.wall_seconds:.1f} s of campaign wall time "
                  f"({wall:.1f} s with building), {r.seconds / r.cuts:.3f} worker-s per cut, wrong {r.wrong_results}, "
                  f"ok {r.ok}", flush=True)
    one, many = rows[1], rows[a.workers]
    same = ({k: v for k, v in one["report"].as_dict().items() if k not in SKIP}
            == {k: v for k, v in many["report"].as_dict().items() if k not in SKIP})
    speedup = one["campaign_wall_s"] / many["campaign_wall_s"]
    efficiency = speedup / a.workers
    per_cut_1 = one["campaign_wall_s"] / one["cuts"]        # one core, everything included (oracles per shard)
    est = 1e6 * per_cut_1 / (a.cluster_cores * efficiency)
    print(f"speed-up {speedup:.2f}x on {a.workers} workers (efficiency {100 * efficiency:.0f} %); reports equal: {same}")
    print(f"1 M cuts on {a.cluster_cores} cores at {per_cut_1:.3f} s per cut per core and this efficiency: "
          f"{est / 3600:.1f} h")
    out = {"target": a.target, "board": a.board, "granularity": a.granularity, "cuts": a.cuts, "shards": a.shards,
           "workers": a.workers, "wall_s_1": one["campaign_wall_s"], "wall_s_n": many["campaign_wall_s"],
           "speedup": speedup, "efficiency": efficiency, "seconds_per_cut_one_core": per_cut_1,
           "reports_equal": same, "ok": one["ok"] and many["ok"],
           "estimate_1m_cuts_hours": est / 3600, "cluster_cores": a.cluster_cores}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0 if out["ok"] and same else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TinyexitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
