"""Randomized conformance sweep: N random int8 models x M inputs, every layer's output and the whole model
compared byte for byte with tflite_micro, for each kernel variant (reference, cortex_m4 built for the host).

    .venv/bin/python benchmarks/conformance_sweep.py [--models 300] [--inputs 1000] [--batch 30]
                                                     [--seed 0] [--kernels reference,cortex_m4] [--json out.json]

The models come from the randomized conformance test's generator (tests/codegen/_random_models.py): model k is
`random_model(seed + k, inputs)` (family fc_deep / fc_wide / conv and scale class loguniform / inexact / tie
drawn from its seed), so any model of a sweep can be rebuilt alone. Prints, per layer type and in total, how
many (layer, input) outputs are identical to tflite_micro's, and how many layers are identical on every
input; writes the same as JSON (--json). Batches of --batch models share one generated library.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.codegen import _random_models as R  # noqa: E402  (the test's generator, shared)


def sweep(n_models: int, n_inputs: int, batch: int, seed: int, variants: list[str], work: Path) -> dict:
    outputs = {v: defaultdict(lambda: [0, 0]) for v in variants}     # kind -> [identical, total] (layer x input)
    layers = {v: defaultdict(lambda: [0, 0]) for v in variants}      # kind -> [identical on all inputs, total]
    mismatches = {v: [] for v in variants}
    families, classes, fc_widths = Counter(), Counter(), []
    t0, t_build = time.time(), 0.0
    for start in range(0, n_models, batch):
        tb = time.time()
        models = [R.random_model(seed + k, n_inputs) for k in range(start, min(start + batch, n_models))]
        cases = [c for m in models for c in m.cases()]
        t_build += time.time() - tb
        for m in models:
            families[m.family] += 1
            classes[m.scale_class] += 1
            fc_widths += [int(m.g.spec(la.output).shape[-1]) for la in m.g.layers if la.kind == "FULLY_CONNECTED"]
        for v in variants:
            result = R.compare(cases, work / f"b{start}", v)
            for c in cases:
                same = result.same[c.name]
                outputs[v][c.kind][0] += int(same.sum())
                outputs[v][c.kind][1] += len(same)
                layers[v][c.kind][0] += int(same.all())
                layers[v][c.kind][1] += 1
                if not same.all():
                    mismatches[v].append({"case": c.name, "kind": c.kind, "inputs_differing": int((~same).sum())})
        done = min(start + batch, n_models)
        print(f"  {done}/{n_models} models, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return {"models": n_models, "inputs_per_model": n_inputs, "seed": seed, "kernels": variants,
            "families": dict(families), "scale_classes": dict(classes),
            "fc_layers": len(fc_widths), "fc_layers_200_plus_outputs": sum(w >= 200 for w in fc_widths),
            "fc_max_outputs": max(fc_widths, default=0),
            "outputs": {v: {k: {"identical": a, "total": n} for k, (a, n) in sorted(outputs[v].items())}
                        for v in variants},
            "layers": {v: {k: {"identical": a, "total": n} for k, (a, n) in sorted(layers[v].items())}
                       for v in variants},
            "mismatches": mismatches, "seconds": round(time.time() - t0, 1),
            "seconds_building_models": round(t_build, 1)}


def table(r: dict) -> str:
    rows = [f"conformance sweep: {r['models']} random models x {r['inputs_per_model']} inputs, seed {r['seed']} "
            f"({r['seconds']:.0f} s)",
            f"families {r['families']}, scale classes {r['scale_classes']}; {r['fc_layers']} FC layers, "
            f"{r['fc_layers_200_plus_outputs']} with 200+ outputs (max {r['fc_max_outputs']})"]
    for v in r["kernels"]:
        rows.append(f"\nkernels {v}: outputs identical to tflite_micro (layer x input), layers identical on "
                    f"every input")
        tot_o = tot_n = tot_l = tot_ln = 0
        for k, o in r["outputs"][v].items():
            la = r["layers"][v][k]
            rows.append(f"  {k:<20} {o['identical']:>10,} / {o['total']:<10,} {la['identical']:>6,} / "
                        f"{la['total']:,}")
            tot_o, tot_n = tot_o + o["identical"], tot_n + o["total"]
            tot_l, tot_ln = tot_l + la["identical"], tot_ln + la["total"]
        rows.append(f"  {'total':<20} {tot_o:>10,} / {tot_n:<10,} {tot_l:>6,} / {tot_ln:,}")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=300)
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=30, help="models per generated library")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernels", default="reference,cortex_m4")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = sweep(a.models, a.inputs, a.batch, a.seed, a.kernels.split(","), Path(tmp))
    print(table(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0 if not any(r["mismatches"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
