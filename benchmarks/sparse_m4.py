"""Sparse weights on the emulated Cortex-M4: dense cortex_m4 vs sparse cortex_m4 vs sparse reference kernels
on pruned DS-CNNs (the compressed KWS runs), exact instructions per inference (QEMU mps2-an386 + the
instruction-count plugin), code and weight bytes, every output checked against tflite_micro.

    .venv/bin/python benchmarks/sparse_m4.py [--run runs/compress-kws/cli22 ...] [--inputs 2]
                                             [--no-layers] [--json out.json]

Default runs: every runs/compress-kws/*/ with a quant/ folder among c32kb, cli22, c28kb, c24kb, c20kb (about
67 / 73 / 75 / 83 / 92 % of the conv and FC weights pruned). Each run's quant/ folder is copied to a
temporary folder; nothing is written into the run. Instructions, not cycles (see ../shared/ANCHORS.md).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.run import Run
from tinyexit.codegen.sparse import weight_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from kernels_m4 import _fresh, measure_library  # noqa: E402  (one measuring loop for both benchmarks)
DEFAULT_RUNS = ("c32kb", "cli22", "c28kb", "c24kb", "c20kb")
# (label, kernel variant, sparse storage)
CONFIGS = (("dense cortex_m4", "cortex_m4", False), ("sparse cortex_m4", "cortex_m4", True),
           ("sparse reference", "reference", True), ("dense reference", "reference", False))


def measure(models: dict[str, Path], variant: str, sparse: bool, work: Path, n_inputs: int, layers: bool) -> dict:
    return measure_library(models, variant, work, n_inputs, layers, sparse=sparse)


def _mean(r: dict, name: str) -> int:
    return int(np.mean(r["models"][name]["insns"]))


def print_run(title: str, res: dict[str, dict], segments: list[str], table: dict) -> None:
    labels = list(res)
    first = res[labels[0]]
    pruned = sum(la["zeros"] for la in table["layers"] if la["format"] == "sparse")
    elems = sum(la["weight_elements"] for la in table["layers"] if la["format"] == "sparse")
    print(f"\n== {title}: {table['sparse_layers']} sparse layers, {pruned / max(elems, 1):.1%} of their weights zero")
    print(f"{'model':<16} {'MACs':>10}" + "".join(f" {lab:>17}" for lab in labels) + "  exact")
    rows = [(n, [n]) for n in first["models"]] + [("no-exit inf.", segments)]
    for label, names in rows:
        macs = sum(first["models"][n]["macs"] for n in names)
        vals = [sum(_mean(res[lab], n) for n in names) for lab in labels]
        exact = all(res[lab]["models"][n]["exact"] for lab in labels for n in names)
        print(f"{label:<16} {macs:>10,}" + "".join(f" {v:>17,}" for v in vals) + f"  {exact}")
    base = sum(_mean(res[labels[0]], n) for n in segments)
    print("ratio to dense cortex_m4 (no-exit inference): "
          + ", ".join(f"{lab} {sum(_mean(res[lab], n) for n in segments) / base:.3f}" for lab in labels[1:]))
    for lab, r in res.items():
        print(f"{lab:>17}: library code {r['code_bytes']:,} B (kernels {sum(r['kernel_text_bytes'].values()):,} B), "
              f"weights {r['weight_bytes']:,} B, arena {r['arena_bytes']:,} B (kernel scratch up to "
              f"{r['arena_scratch_bytes']:,} B inside), static kernel scratch {sum(r['static_scratch_bytes'].values()):,} B")
    if "steps" not in first["models"][segments[0]]:
        return
    print("  per layer (instructions of each step alone, first input):")
    print(f"  {'model step':<30}" + "".join(f" {lab:>17}" for lab in labels))
    fmt = {(la["model"], la["step"]): la for la in table["layers"]}
    for name in first["models"]:
        for i, op in enumerate(first["models"][name]["ops"]):
            la = fmt.get((name, i))
            tag = f" {la['zeros'] / la['weight_elements']:.0%} zeros" if la and la["format"] == "sparse" else ""
            print(f"  {f'{name} {i}: {op}{tag}':<30}"
                  + "".join(f" {res[lab]['models'][name]['steps'][i]['insns']:>17,}" for lab in labels))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, action="append", help="a compressed run directory (repeatable)")
    ap.add_argument("--inputs", type=int, default=2)
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = ap.parse_args()
    runs = args.run or [REPO / "runs" / "compress-kws" / r for r in DEFAULT_RUNS]
    doc, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            src = run / "quant"
            if not src.is_dir():
                print(f"\n== {run}: no quant/ folder, skipped")
                continue
            work = Path(tmp) / run.name
            shutil.copytree(src, work / "run" / "quant")   # the run itself is never written
            models = Run(work / "run").quant_models()
            segments = [s["name"] for s in json.loads((src / "manifest.json").read_text())["segments"]]
            res = {label: measure(models, variant, sparse, _fresh(work / label.replace(" ", "_")), args.inputs,
                                  not args.no_layers)
                   for label, variant, sparse in CONFIGS}
            print_run(str(run), res, segments, weight_table(models))
            doc[str(run)] = res
            ok &= all(m["exact"] for r in res.values() for m in r["models"].values())
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nall outputs identical to tflite_micro: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
