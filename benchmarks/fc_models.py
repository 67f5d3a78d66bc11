"""FULLY_CONNECTED on the emulated Cortex-M4: an int8 autoencoder like MLPerf Tiny's anomaly-detection model
and narrow / odd FC shapes, made in code (random weights, synthetic data, TFLite converter int8 PTQ), then
per layer and whole model: MACs, instructions, estimated cycles, cycles per MAC, and the code bytes of the FC
kernel, every output checked against tflite_micro (tinyexit.profile on the emulated nrf52840).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fc_models.py [--out DIR] [--model ae] [--conformance]
                                                             [--inputs 4] [--json OUT]

Models (`make_models`):
- ae: Dense 640 -> 128 -> 128 -> 128 -> 128 -> 8 -> 128 -> 128 -> 128 -> 128 -> 640, ReLU but the last
  (MLPerf Tiny v1.x anomaly detection's ToyADMOS model, without its batch norms), 264,192 MACs.
- narrow and odd shapes: fc_8_128 (an 8-input layer, the autoencoder's decoder entry alone), fc_13_10,
  fc_17_9_relu6, fc_3_5, fc_1_1, fc_37_7_pertensor (per-tensor weights), fc_64_12 (KWS's final FC shape).
--conformance: also the FULLY_CONNECTED steps of ../shared/conformance's KWS and ResNet-8 models.

Cycles are ESTIMATED (Cortex-M4 TRM timings, zero wait states, no flash wait states; tinyexit.profile's NOTE).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"

AE_WIDTHS = (128, 128, 128, 128, 8, 128, 128, 128, 128)


def _dense_stack(keras, n_in: int, widths, n_out: int, act_last=None):
    x = keras.Input((n_in,), batch_size=1)
    y = x
    for w in widths:
        y = keras.layers.Dense(w, activation="relu")(y)
    y = keras.layers.Dense(n_out, activation=act_last)(y)
    return keras.Model(x, y)


# name -> (builder(keras) -> keras.Model, input length, per-channel weights)
SPECS = {
    "ae": (lambda k: _dense_stack(k, 640, AE_WIDTHS, 640), 640, True),
    "fc_8_128": (lambda k: _dense_stack(k, 8, (), 128, "relu"), 8, True),
    "fc_13_10": (lambda k: _dense_stack(k, 13, (), 10), 13, True),
    "fc_17_9_relu6": (lambda k: _dense_stack(k, 17, (), 9, "relu6"), 17, True),
    "fc_3_5": (lambda k: _dense_stack(k, 3, (), 5), 3, True),
    "fc_1_1": (lambda k: _dense_stack(k, 1, (), 1), 1, True),
    "fc_37_7_pertensor": (lambda k: _dense_stack(k, 37, (), 7, "relu"), 37, False),
    "fc_64_12": (lambda k: _dense_stack(k, 64, (), 12), 64, True),
}


def make_model(name: str, out_dir: Path, seed: int = 0) -> Path:
    """Convert SPECS[name] to an int8 .tflite in out_dir (kept: an existing file is reused). Biases random
    (non-zero), representative data: 64 vectors of a smooth synthetic spectrum plus noise."""
    import keras

    from tinyexit.quantize import convert_int8

    path = out_dir / f"{name}.tflite"
    if path.exists():
        return path
    build, n_in, per_channel = SPECS[name]
    keras.utils.set_random_seed(seed)
    model = build(keras)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            ws[-1] = rng.normal(0, 0.1, size=ws[-1].shape).astype(np.float32)
            layer.set_weights(ws)
    t = np.linspace(0, 1, n_in, dtype=np.float32)
    rep = (np.sin(2 * np.pi * rng.uniform(1, 5, (64, 1)) * t + rng.uniform(0, 6, (64, 1)))
           + rng.normal(0, 0.3, (64, n_in))).astype(np.float32)
    path.write_bytes(convert_int8(model, rep, per_channel=per_channel))
    return path


def fc_code_bytes(lib: Path) -> dict:
    """.text of tx_fc.c (and the whole library) for the Cortex-M4, arm-none-eabi-gcc -O2."""
    from tinyexit.codegen.measure import section_sizes

    srcs = sorted(p.name for p in lib.glob("*.c") if not p.name.startswith("host_"))
    compiler, sizes = section_sizes(lib, srcs)
    return {"compiler": compiler, "tx_fc_text": sizes.get("tx_fc.c", {}).get("text"),
            "library_text": sum(s["text"] for s in sizes.values())}


def measure(path: Path, inputs: int, work: Path) -> dict:
    from tinyexit.profile import profile

    doc = profile(path, "nrf52840", inputs=inputs, work=work, progress=False)
    m = next(iter(doc["models"].values()))
    m["fc_code"] = fc_code_bytes(work / "lib")
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the .tflite files (default: a temporary folder)")
    ap.add_argument("--model", action="append", choices=sorted(SPECS), help="default: all")
    ap.add_argument("--conformance", action="store_true", help="also KWS's and ResNet-8's FC steps")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        paths = {n: make_model(n, out) for n in (a.model or SPECS)}
        if a.conformance:
            paths |= {"kws": CONFORMANCE / "kws_ref_model.tflite", "resnet": CONFORMANCE / "pretrainedResnet_quant.tflite"}
        for name, p in paths.items():
            m = measure(p, a.inputs, Path(tmp) / f"w_{name}")
            fc = [s for s in m["steps"] if s["op"] == "FULLY_CONNECTED"]
            res[name] = {"macs": m["macs"], "instructions": m["instructions"], "cycles": m["cycles"],
                         "cycles_per_mac": m["cycles_per_mac"], "identical": m["identical_to_tflite_micro"],
                         "fc_code": m["fc_code"],
                         "fc_steps": [{k: s[k] for k in ("step", "macs", "instructions", "cycles")} for s in fc]}
            ok = "bit-exact" if m["identical_to_tflite_micro"] else "DIFFERS from tflite_micro"
            print(f"{name}: {m['macs']:,} MACs, {m['instructions']:,.0f} instructions "
                  f"({m['instructions'] / m['macs']:.2f}/MAC), {m['cycles']:,.0f} cycles "
                  f"({m['cycles_per_mac']:.2f}/MAC), tx_fc.c {m['fc_code']['tx_fc_text']} B, "
                  f"library {m['fc_code']['library_text']} B; {ok}")
            for s in fc:
                print(f"  step {s['step']:>2} FC {s['macs']:>8,} MACs {s['instructions']:>10,.0f} instr "
                      f"({s['instructions'] / s['macs']:5.2f}/MAC) {s['cycles']:>10,.0f} cycles "
                      f"({s['cycles'] / s['macs']:5.2f}/MAC)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if all(r["identical"] for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
