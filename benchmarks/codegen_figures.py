"""Arena, weight and code bytes of the generated C for the conformance models, next to TFLM's figures.

    .venv/bin/python benchmarks/codegen_figures.py [--out DIR] [--no-inplace]

Arena: our static plan vs tflite_micro's recording allocator on this host (64-bit pointers: its persistent
part is larger than on a Cortex-M4; ANCHORS.md has the Cortex-M4 figures). Code: .text of the library
objects for Cortex-M4 at -O2 (arm-none-eabi-gcc), weights excluded.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tinyexit.codegen import generate

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}
ANCHOR_ARENA = {"kws": 22772, "resnet": 54340}          # TFLM arena_used_bytes on Cortex-M4 (ANCHORS.md)
TARGET_ARENA = {"kws": 9000, "resnet": 33000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="keep the generated libraries here")
    ap.add_argument("--no-inplace", action="store_true")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.out or tmp)
        for name, file in MODELS.items():
            path = CONFORMANCE / file
            if not path.is_file():
                print(f"skip {name}: {path} is absent")
                continue
            r = generate({name: path}, base / name, inplace=not args.no_inplace)
            m = r.models[name]
            rows[name] = {"arena_bytes": m.arena_bytes, "tflm_arena_host": m.tflm_arena_bytes,
                          "tflm_activations_host": m.tflm_activation_bytes,
                          "tflm_arena_cortex_m4": ANCHOR_ARENA[name], "target_arena": TARGET_ARENA[name],
                          "weight_bytes": m.weight_bytes, "code_bytes": m.code_bytes, "macs": m.macs,
                          "inplace_ops": len(m.inplace_ops), "compiler": r.compiler}
    print(f"{'model':<8} {'MACs':>11} {'arena':>7} {'TFLM M4':>8} {'TFLM host':>9} {'target':>7} "
          f"{'weights':>8} {'code':>6}")
    for name, f in rows.items():
        print(f"{name:<8} {f['macs']:>11,} {f['arena_bytes']:>7,} {f['tflm_arena_cortex_m4']:>8,} "
              f"{f['tflm_arena_host'] or 0:>9,} {f['target_arena']:>7,} {f['weight_bytes']:>8,} "
              f"{f['code_bytes'] or 0:>6,}")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
