"""Check a trained run's generated library against tflite_micro on real inputs: every segment and exit
head alone, and the chain seg0 -> (exit heads, seg1 -> ...) as the firmware runs it.

    .venv/bin/python benchmarks/codegen_run_check.py RUN [--split test] [--n 200]

Writes nothing into RUN (the library goes to a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


from tinyexit.codegen import generate, read_model
from tinyexit.conformance import build_host, run_host, tflm_outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from tinyexit.quantize import QParams, quantize_array
    from tinyexit.run import Run

    run = Path(args.run)
    manifest = json.loads((run / "quant" / "manifest.json").read_text())
    models = Run(run).quant_models()
    x, _ = Run(run).split(args.split)
    x = x[: args.n]
    qp = read_model(models[manifest["segments"][0]["name"]]).input
    xq = quantize_array(x, QParams(qp.scale, qp.zero_point)).reshape(len(x), -1)
    with tempfile.TemporaryDirectory() as tmp:
        report = generate(models, Path(tmp) / "lib")
        print(report.table())
        exe = build_host(Path(tmp) / "lib")
        # Chain: each segment's input is the previous segment's output (bytes), as on the device.
        feed = {manifest["segments"][0]["name"]: xq}
        total_bad = 0
        for k, seg in enumerate(manifest["segments"]):
            name = seg["name"]
            inp = feed[name]
            g = read_model(models[name])
            want = tflm_outputs(models[name], inp.reshape(len(inp), *g.input.shape[1:]))
            got = run_host(exe, name, inp, g.output.nbytes)
            bad = int((got != want).any(axis=1).sum())
            total_bad += bad
            print(f"{name}: {len(inp)} inputs, {bad} differ from tflite_micro")
            for e in manifest.get("exits", []):
                if e.get("file") and e["after_segment"] == k:
                    ge = read_model(models[e["name"]])
                    we = tflm_outputs(models[e["name"]], got.reshape(len(got), *ge.input.shape[1:]))
                    ge_out = run_host(exe, e["name"], got, ge.output.nbytes)
                    b = int((ge_out != we).any(axis=1).sum())
                    total_bad += b
                    print(f"  {e['name']} (after {name}): {len(got)} inputs, {b} differ")
            if k + 1 < len(manifest["segments"]):
                feed[manifest["segments"][k + 1]["name"]] = got
        print("bit-exact" if total_bad == 0 else f"{total_bad} mismatching outputs")


if __name__ == "__main__":
    main()
