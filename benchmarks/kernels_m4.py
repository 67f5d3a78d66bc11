"""Portable (reference) vs Cortex-M4 DSP (cortex_m4) kernels, side by side, on the emulated Cortex-M4:
exact instructions per inference (QEMU mps2-an386 + the instruction-count plugin: one window per
tx_invoke, or per step for the per-layer table), instructions per MAC, code, arena and static scratch
bytes, every output checked against tflite_micro.

    .venv/bin/python benchmarks/kernels_m4.py [--model kws] [--model resnet] [--model run] [--run runs/kws]
                                              [--inputs 2] [--no-layers] [--json out.json]

`kws` / `resnet`: the conformance models (../shared/conformance). `run`: the segments and exit heads of a
run directory (default runs/kws; its quant/ folder is copied to a temporary folder, nothing is written
into the run). Beside the exact instructions: estimated Cortex-M4 cycles (the plugin's TRM-timing model, zero wait
states, no flash wait states). See ../shared/ANCHORS.md for the TFLM figures counted the same way.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.codegen import generate, read_model
from tinyexit.run import Run
from tinyexit.codegen.measure import section_sizes
from tinyexit.conformance import emulated_outputs, tflm_outputs

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}
ANCHOR = {"kws": (43_040_226, 7_697_362), "resnet": (107_405_837, 29_864_657)}   # TFLM ref, TFLM+CMSIS-NN
VARIANTS = ("reference", "cortex_m4")


def measure_library(models: dict[str, Path], variant: str, work: Path, n_inputs: int, layers: bool,
                    sparse: bool | None = None) -> dict:
    """Generate one library of `models` with kernel variant `variant` (and sparse weight storage on/off, or
    the generator's default), run every model on the emulated M4, check it against tflite_micro."""
    lib = work / f"lib_{variant}"
    rep = generate(models, lib, kernels=variant, compare_tflm=False,
                   **({} if sparse is None else {"sparse": sparse}))
    kernel_sources = sorted(p.name for p in lib.glob("tx_*.c")
                            if p.name != "tx_runtime.c" and not p.name.startswith("tx_model_"))
    _, sizes = section_sizes(lib, kernel_sources)
    out = {"variant": variant, "sparse": sparse, "arena_bytes": rep.arena_bytes, "code_bytes": rep.code_bytes,
           "arena_scratch_bytes": rep.scratch_bytes,
           "weight_bytes": rep.weight_bytes,
           "kernel_text_bytes": {s: v["text"] for s, v in sizes.items()},
           "static_scratch_bytes": {s: v["bss"] + v["data"] for s, v in sizes.items() if v["bss"] + v["data"]}, "models": {}}
    for name, path in models.items():
        g = read_model(path)
        x = np.random.default_rng(0).integers(-128, 128, size=(n_inputs, *g.input.shape[1:])).astype(np.int8)
        got, insns, cycles = emulated_outputs(lib, name, x, work=_fresh(work / f"fw_{variant}_{name}"), cycles=True)
        fig = rep.models[name]
        m = {"macs": fig.macs, "insns": insns, "cycles": cycles,
             "exact": bool(np.array_equal(got, tflm_outputs(path, x))),
             "code_bytes": fig.code_bytes, "arena_bytes": fig.arena_bytes, "ops": list(fig.ops)}
        if layers:
            _, steps, step_cycles = emulated_outputs(lib, name, x[:1], per_step=True, cycles=True,
                                                     work=_fresh(work / f"st_{variant}_{name}"))
            m["steps"] = [{"op": op, "macs": macs, "insns": n, "cycles": c}
                          for op, macs, n, c in zip(fig.ops, fig.step_macs, steps, step_cycles)]
        out["models"][name] = m
    return out


def _fresh(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _per_mac(n: float, macs: int) -> str:
    return f"{n / macs:6.2f}" if macs else "     -"


def print_target(title: str, res: dict[str, dict], anchor=None, segments: list[str] | None = None) -> None:
    ref, opt = res["reference"], res["cortex_m4"]
    print(f"\n== {title}")
    print(f"{'model':<14} {'MACs':>10} {'reference':>12} {'/MAC':>6} {'cortex_m4':>11} {'/MAC':>6} {'ratio':>6}  exact"
          f"  {'m4 est.cycles':>13} {'/MAC':>6}")
    tot = [0, 0, 0]
    for name, r in ref["models"].items():
        o = opt["models"][name]
        a, b = int(np.mean(r["insns"])), int(np.mean(o["insns"]))
        c = int(np.mean(o["cycles"]))
        tot[0] += r["macs"]
        tot[1] += a
        tot[2] += b
        print(f"{name:<14} {r['macs']:>10,} {a:>12,} {_per_mac(a, r['macs'])} {b:>11,} {_per_mac(b, r['macs'])} "
              f"{b / a:6.3f}  {r['exact'] and o['exact']}  {c:>13,} {_per_mac(c, r['macs'])}")
    if len(ref["models"]) > 1:
        print(f"{'all models':<14} {tot[0]:>10,} {tot[1]:>12,} {_per_mac(tot[1], tot[0])} {tot[2]:>11,} "
              f"{_per_mac(tot[2], tot[0])} {tot[2] / tot[1]:6.3f}")
    if segments:   # one inference without early exit: every segment once, no exit head
        m = sum(ref["models"][n]["macs"] for n in segments)
        a = sum(int(np.mean(ref["models"][n]["insns"])) for n in segments)
        b = sum(int(np.mean(opt["models"][n]["insns"])) for n in segments)
        print(f"{'no-exit inf.':<14} {m:>10,} {a:>12,} {_per_mac(a, m)} {b:>11,} {_per_mac(b, m)} {b / a:6.3f}"
              f"  ({' + '.join(segments)})")
    if anchor:
        b = tot[2]
        print(f"TFLM reference {anchor[0]:,} ({b / anchor[0]:.3f}x), TFLM+CMSIS-NN {anchor[1]:,} ({b / anchor[1]:.3f}x)")
    for v in (ref, opt):
        static = sum(v['static_scratch_bytes'].values())
        print(f"{v['variant']:>10}: RAM {v['arena_bytes'] + static:,} B = arena {v['arena_bytes']:,} B (kernel scratch "
              f"up to {v['arena_scratch_bytes']:,} B inside) + static kernel scratch {static:,} B "
              f"{v['static_scratch_bytes'] or ''}; library code {v['code_bytes']:,} B "
              f"(kernels {sum(v['kernel_text_bytes'].values()):,} B), weights {v['weight_bytes']:,} B")
    for name, r in ref["models"].items():
        if "steps" not in r:
            continue
        print(f"  per layer, {name} (instructions of each step alone, first input; estimated cycles, zero wait states):")
        print(f"  {'step':<24} {'MACs':>9} {'reference':>11} {'/MAC':>6} {'cortex_m4':>10} {'/MAC':>6} "
              f"{'m4 est.cycles':>13} {'/MAC':>6}")
        for i, (s, t) in enumerate(zip(r["steps"], opt["models"][name]["steps"])):
            print(f"  {str(i) + ': ' + s['op']:<24} {s['macs']:>9,} {s['insns']:>11,} "
                  f"{_per_mac(s['insns'], s['macs'])} {t['insns']:>10,} {_per_mac(t['insns'], s['macs'])} "
                  f"{t['cycles']:>13,} {_per_mac(t['cycles'], s['macs'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, "run"], action="append")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "kws", help="run directory for --model run")
    ap.add_argument("--inputs", type=int, default=2)
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = ap.parse_args()
    doc, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.model or [*MODELS, "run"]:
            if target == "run":
                src = args.run / "quant"
                if not src.is_dir():
                    print(f"\n== run {args.run}: no quant/ folder, skipped")
                    continue
                shutil.copytree(src, Path(tmp) / "run" / "quant")   # the run itself is never written
                models = Run(Path(tmp) / "run").quant_models()
                manifest = json.loads((src / "manifest.json").read_text())
                segments = [s["name"] for s in manifest["segments"]]
                title, anchor = f"KWS run {args.run} (segments and exit heads)", None
            else:
                models = {target: CONFORMANCE / MODELS[target]}
                title, anchor, segments = f"{MODELS[target]}", ANCHOR[target], None
            res = {v: measure_library(models, v, Path(tmp) / target, args.inputs, not args.no_layers)
                   for v in VARIANTS}
            print_target(title, res, anchor, segments)
            doc[target] = res
            ok &= all(m["exact"] for r in res.values() for m in r["models"].values())
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nall outputs identical to tflite_micro: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
