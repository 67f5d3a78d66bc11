"""Exact instructions of one tx_invoke per conformance model on the emulated Cortex-M4 (QEMU mps2-an386,
instruction-count plugin), with the outputs compared with tflite_micro for the same inputs.

    .venv/bin/python benchmarks/codegen_insns.py [--model kws|resnet] [--opt -O2] [--inputs 3] [--kernels cortex_m4]

Counts the instructions between the entries of tx_bench_begin() and tx_bench_end() around tx_invoke (the
same counting as ANCHORS.md: instructions, not cycles).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.codegen import generate, read_model
from tinyexit.conformance import emulated_outputs, tflm_outputs

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}
ANCHOR = {"kws": (43_040_226, 7_697_362), "resnet": (107_405_837, 29_864_657)}  # TFLM ref, TFLM+CMSIS-NN
TARGET = {"kws": 4_600_000, "resnet": 17_900_000}


def steps_of(lib: Path, name: str) -> list[tuple[str, int]]:
    """(step label, MACs) in run order, from the library's report.json."""
    import json

    doc = json.loads((lib / "report.json").read_text())["models"][name]
    return [(f"{i}: {op}", macs) for i, (op, macs) in enumerate(zip(doc["ops"], doc["step_macs"]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), action="append")
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--inputs", type=int, default=3)
    ap.add_argument("--per-step", action="store_true", help="also print the instructions of each step")
    ap.add_argument("--kernels", default="reference", help="kernel variant (firmware_templates/kernels/<variant>)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.model or list(MODELS):
            path = CONFORMANCE / MODELS[name]
            lib = Path(tmp) / name
            generate({name: path}, lib, kernels=args.kernels, compare_tflm=False)
            g = read_model(path)
            x = np.random.default_rng(0).integers(-128, 128, size=(args.inputs, *g.input.shape[1:])).astype(np.int8)
            got, insns = emulated_outputs(lib, name, x, opt=args.opt)
            exact = bool(np.array_equal(got, tflm_outputs(path, x)))
            n = insns[0]
            ref, cmsis = ANCHOR[name]
            if args.per_step:
                _, steps = emulated_outputs(lib, name, x[:1], opt=args.opt, per_step=True)
                for op, count in zip(steps_of(lib, name), steps):
                    macs = op[1]
                    print(f"  {op[0]:<34} {count:>11,} instr" + (f"  {count / macs:6.2f} / MAC" if macs else ""))
            print(f"{name} ({args.kernels}): {n:,} instructions per inference ({n / g.macs():.2f} / MAC; all runs: "
                  f"{sorted(set(insns))}), TFLM reference {ref:,} ({n / ref:.2f}x), TFLM+CMSIS-NN {cmsis:,} "
                  f"({n / cmsis:.2f}x), target {TARGET[name]:,}; outputs == tflite_micro: {exact}")


if __name__ == "__main__":
    main()
