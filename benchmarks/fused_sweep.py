"""Stress sweep of the fused, row-streamed plans (tinyexit.codegen.stream_plan) on random conv models
(tests/codegen/_random_models.py, family "conv"): every model whose graph has a chain is planned fused even
where the layer plan is smaller (the planner's choice is overridden below: `forced`), so the scheduler, the
windows and the kernels' row calls run on many shapes (strides, VALID/SAME edges, 1x1 stride 2, depth
multipliers, pools). Outputs compared byte for byte with tflite_micro: host builds of both kernel variants
and both fused plans, and with --emulate N the first N fused models on the emulated Cortex-M4 (cortex_m4).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fused_sweep.py [--seeds 200 500] [--emulate 12]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.codegen._random_models import _tflm_arena, random_model  # noqa: E402
from tinyexit.codegen import generate  # noqa: E402
from tinyexit.codegen.stream_chain import StreamChain  # noqa: E402
from tinyexit.conformance import build_host, emulated_outputs, run_host, tflm_outputs  # noqa: E402

G = importlib.import_module("tinyexit.codegen.generate")
_plan_memory = G.plan_memory


def forced(graph, **kw):
    """plan_memory, with every graph that has no chain made 1 MB larger: the fused form always wins."""
    p = _plan_memory(graph, **kw)
    if any(isinstance(op, StreamChain) for op in graph.ops):
        return p
    return dataclasses.replace(p, arena_bytes=p.arena_bytes + (1 << 20))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs=2, default=(200, 500))
    ap.add_argument("--emulate", type=int, default=0, help="also run the first N fused models on the emulator")
    args = ap.parse_args()
    G.plan_memory = forced
    work = Path(tempfile.mkdtemp())
    paths, cases = {}, {}
    for seed in range(*args.seeds):
        c = random_model(seed, 4, family="conv").cases()[-1]
        paths[f"s{seed}"] = work / f"s{seed}.tflite"
        paths[f"s{seed}"].write_bytes(c.model)
        cases[f"s{seed}"] = c
    ok = True
    for plan in ("fused", "fused2"):
        for kernels in ("reference", "cortex_m4"):
            lib = work / f"lib_{plan}_{kernels}"
            rep = generate(paths, lib, kernels=kernels, plan=plan, measure=False, compare_tflm=False)
            exe = build_host(lib)
            fused = [n for n, m in rep.models.items() if m.plan != "layers"]
            bad = []
            for n in fused:
                want = tflm_outputs(paths[n], cases[n].inputs, arena_size=_tflm_arena(paths[n]))
                if not (run_host(exe, n, cases[n].inputs, want.shape[1]) == want).all():
                    bad.append(n)
            print(f"host {plan} {kernels}: {len(fused)} of {len(paths)} models fused, differing from "
                  f"tflite_micro: {bad or 'none'}", flush=True)
            if kernels == "cortex_m4" and args.emulate:
                ebad = []
                for n in fused[:args.emulate]:
                    (work / f"fw_{plan}_{n}").mkdir()
                    got, _ = emulated_outputs(lib, n, cases[n].inputs, work=work / f"fw_{plan}_{n}")
                    want = tflm_outputs(paths[n], cases[n].inputs, arena_size=_tflm_arena(paths[n]))
                    if not (got == want).all():
                        ebad.append(n)
                print(f"emulated {plan} cortex_m4: {min(len(fused), args.emulate)} fused models, differing: "
                      f"{ebad or 'none'}", flush=True)
                bad += ebad
            ok &= not bad
    print(f"all identical to tflite_micro: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
