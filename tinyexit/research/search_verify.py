"""Verification of a chosen exit-placement design (`tinyexit.research.search`): build it for real and put
predicted next to measured figures.

The design's head is attached and trained via augment (same training as the search), the run quantized to int8,
the int8 max-softmax threshold chosen on validation for the target, accuracy, exit rate and expected MACs
measured on test (int8, tflite_micro), and the C generated for flash and RAM.

    verify(report, out=RUN) -> verification dict (also merged into DIR/search.json)
    format_verification(verification) -> table for people
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import write_json
from tinyexit.research.augment import HeadConfig, HeadTrainConfig, augment_model
from tinyexit.research.search import operating_points, pick_threshold


def verify(report: dict | str | Path, *, out: str | Path, source=None, epochs: int | None = None,
           generate_c: bool = True, measure_code: bool = True, log: Callable[[str], None] = print) -> dict:
    """Build the chosen design for real: attach its head to the source model (augment, same training), quantize
    to int8, choose the int8 max-softmax threshold on validation for the target, measure accuracy, exit rate and
    expected MACs on test (int8, tflite_micro), generate the C for flash and RAM. Returns predicted vs measured
    and adds it to search.json when `report` is a path."""
    import json

    from tinyexit.quantize import quantize_run
    from tinyexit.run import Run

    rep_path = None
    if not isinstance(report, dict):
        rep_path = Path(report)
        rep_path = rep_path / "search.json" if rep_path.is_dir() else rep_path
        report = json.loads(rep_path.read_text())
    d = next(x for x in report["designs"] if x["name"] == report["chosen"])
    target = report["accuracy_target"]
    out = Path(out)
    src = source or report["source"] or report["from_run"]
    cfg = report["config"]
    if d["point"] is None:
        raise TinyexitError("the chosen design has no early exit (no exit point meets the target); nothing to verify")
    log(f"verifying {d['name']}: attaching and training its head, then int8")
    augment_model(src, out=out, heads={d["point"]: HeadConfig(d["width"], d["kind"])},
                  from_run=report["from_run"], task=None if report["from_run"] else report["data"].get("kind", "kws"),
                  data=None if report["from_run"] else report["data"].get("dir"),
                  train_config=HeadTrainConfig(epochs=epochs or cfg["epochs"], batch_size=cfg["batch_size"],
                                               seed=cfg["seed"]),
                  max_train=cfg["max_train"], log=log)
    qrep = quantize_run(out, log=log)
    run = Run(out)
    man = run.manifest()
    pipe = run.oracle()
    m_exit, m_full = man["exits"][0]["macs_to_exit"], man["exits"][-1]["macs_to_exit"]
    xv, yv = run.split("validation")
    ov = pipe.run(xv)
    cv = operating_points(ov[0].astype(np.int64).max(-1), np.argmax(ov[0], -1), np.argmax(ov[-1], -1), yv, m_exit, m_full)
    j = pick_threshold(cv, target)
    xt, yt = run.split("test")
    ot = pipe.run(xt)
    thr_q = int(cv["threshold"][j]) if j is not None and np.isfinite(cv["threshold"][j]) else 128
    exit_mask = ot[0].astype(np.int64).max(-1) >= thr_q
    pred = np.where(exit_mask, np.argmax(ot[0], -1), np.argmax(ot[-1], -1))
    rate = float(exit_mask.mean())
    measured = {
        "split": "test (int8 on tflite_micro)", "threshold_q": thr_q,
        "validation_accuracy": float(cv["accuracy"][j]) if j is not None else None,
        "accuracy": float(np.mean(pred == yt)), "exit_rate": rate,
        "exit_accuracy": float(np.mean(np.argmax(ot[0], -1) == yt)),
        "final_accuracy": float(np.mean(np.argmax(ot[-1], -1) == yt)),
        "expected_macs": rate * m_exit + (1 - rate) * m_full, "macs_to_exit": int(m_exit),
        "full_macs": int(m_full), "no_exit_macs": int(man["no_exit_macs"]),
        "whole_model_check": qrep.get("whole_model_check"),
    }
    if generate_c:
        measured.update(_measure_c(out, measure_code))
    predicted = {k: d[k] for k in ("accuracy", "exit_rate", "exit_accuracy", "expected_macs", "macs_to_exit",
                                   "full_macs", "weight_bytes", "flash_bytes", "ram_bytes")}
    ver = {"design": d["name"], "run": str(out), "predicted": {**predicted, "split": "validation (float)"},
           "measured": {**measured, "accuracy_drop_vs_final": measured["final_accuracy"] - measured["accuracy"]},
           "meets_target_on_test": measured["accuracy"] >= target,
           "target_drop_on_validation": report["backbone"]["validation_accuracy"] - target}
    if rep_path is not None:
        report["verification"] = ver
        write_json(rep_path, report)
    log(format_verification(ver))
    return ver


def _measure_c(run_dir: Path, measure_code: bool) -> dict:
    """Generate the run's C library; weights = the constant arrays at their C types; with `measure_code`, the
    objects compiled for Cortex-M4 give flash = .text + .rodata + .data of the library."""
    from tinyexit.codegen import generate
    from tinyexit.codegen.measure import section_sizes
    from tinyexit.codegen.reader import read_model
    from tinyexit.run import Run

    sizeof = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "float": 4}
    run = Run(run_dir)
    models = run.quant_models()
    lib_dir = run.library_dir
    lib = generate(models, lib_dir, measure=False, compare_tflm=False)
    weights = 0
    for name, path in models.items():
        g = read_model(path, name=name)
        weights += sum(a.values.size * sizeof[a.ctype] for i, op in enumerate(g.ops) for a in op.constants(f"m_{i}"))
    res = {"weight_bytes": int(weights), "arena_bytes": int(lib.arena_bytes)}
    if measure_code:
        srcs = sorted(p.name for p in lib_dir.glob("tx_*.c"))
        compiler, sizes = section_sizes(lib_dir, srcs)
        if sizes:
            res.update(code_bytes=sum(v["text"] for v in sizes.values()),
                       flash_bytes=sum(v["text"] + v["rodata"] + v["data"] for v in sizes.values()),
                       compiler=compiler)
    return res


def format_verification(v: dict) -> str:
    p, m = v["predicted"], v["measured"]
    rows = [f"verification of {v['design']} ({v['run']})",
            f"  {'':<16} {'predicted':>14} {'measured':>14}",
            f"  {'':<16} {'(float, val)':>14} {'(int8, test)':>14}"]
    for k, fmt in (("accuracy", ".4f"), ("exit_rate", ".3f"), ("exit_accuracy", ".4f"), ("macs_to_exit", ",d"),
                   ("expected_macs", ",.0f"), ("weight_bytes", ",d"), ("flash_bytes", ",d")):
        rows.append(f"  {k:<16} {format(p[k], fmt) if p.get(k) is not None else '-':>14} "
                    f"{format(m[k], fmt) if m.get(k) is not None else '-':>14}")
    rows.append(f"  {'ram_bytes':<16} {p['ram_bytes']:>14,} {format(m['arena_bytes'], ',d') if 'arena_bytes' in m else '-':>14}"
                f"  (measured: the generated C's arena)")
    return "\n".join(rows)
