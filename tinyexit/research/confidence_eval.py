"""The learned confidence head (`tinyexit.research.confidence`) against max-softmax: both scores on a split,
compared at equal exit rates (overall accuracy, AUROC of right-vs-wrong) and each calibrated on validation for
an accuracy target (lowest expected MACs, as the search calibrates the softmax threshold).

    confidence_scores(run, split, source="float"|"int8") -> (P(right) or its int8 code, max softmax, exit pred,
                                                             final pred, y)
    compare_at_equal_exit_rates(conf, softmax, exit_pred, final_pred, y, rates) -> accuracies of both policies
    calibrate_confidence(conf, exit_pred, final_pred, y, exit_macs, full_macs, target) -> threshold and figures
    compare_run(run, exit_name, source=...) -> both comparisons; format_comparison(report) -> table for people
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.run import Run, as_run

DEFAULT_RATES = tuple(np.round(np.arange(0.1, 0.91, 0.1), 2))


def first_early_exit(meta: dict) -> str:
    early = [e["name"] for e in meta["exits"] if e["point"] is not None]
    if not early:
        raise TinyexitError("the run has no early exit; attach one with `tinyexit augment` first")
    return early[0]


def confidence_scores(run_dir: str | Path, split: str, *, exit_name: str | None = None, source: str = "float",
                      conf_model=None):
    """(confidence score, max-softmax score, exit prediction, final prediction, labels) on a split.
    float: P(right) and the max probability; int8: their int8 codes (tflite_micro, as the firmware sees them)."""
    import keras

    run = as_run(run_dir)
    meta = run.model_json()
    exit_name = exit_name or first_early_exit(meta)
    x, y = run.split(split)
    if source == "float":
        model = run.load_model()
        from tinyexit.models import output_names
        names = output_names(model)
        outs = model.predict(x, batch_size=256, verbose=0)
        if conf_model is None:
            conf_model = keras.models.load_model(run.confidence_file(exit_name, ".keras"), compile=False)
        point = next(e["point"] for e in meta["exits"] if e["name"] == exit_name)
        from tinyexit.research.graph import point_tensor
        probe = keras.Model(model.inputs[0], point_tensor(model, point))
        conf = conf_model.predict(probe.predict(x, batch_size=256, verbose=0), batch_size=256, verbose=0)[:, 1]
        p = outs[names.index(exit_name)]
        return conf, p.max(-1), np.argmax(p, -1), np.argmax(outs[-1], -1), y
    if source != "int8":
        raise TinyexitError(f"source must be float or int8, not {source!r}")
    from tinyexit.quantize import QParams, TflmModel, quantize_array, seg_out_shape
    man = run.manifest()
    ex = next(e for e in man["exits"] if e["name"] == exit_name)
    segs = [TflmModel(run.quant.piece(s["file"]).read_bytes()) for s in man["segments"]]
    acts = [quantize_array(x, QParams.of(man["segments"][0]["input"]))]
    for s in segs:
        acts.append(s.run(acts[-1])[0].reshape((len(x),) + tuple(seg_out_shape(s))))
    boundary = acts[ex["after_segment"] + 1]
    head = TflmModel(run.quant.piece(ex["file"]).read_bytes()).run(boundary)[0]
    conf = TflmModel((run.confidence_file(exit_name, ".tflite")).read_bytes()).run(boundary)[0]
    from tinyexit.policy.decisions import argmax_first
    return (conf[:, 1].astype(np.int64), head.astype(np.int64).max(-1), argmax_first(head),
            argmax_first(acts[-1].reshape(len(x), -1)), y)


def _top_k_exit(score: np.ndarray, k: int) -> np.ndarray:
    """Exit the k inputs with the highest score (ties broken by input order)."""
    mask = np.zeros(len(score), bool)
    mask[np.argsort(-np.asarray(score, np.float64), kind="stable")[:k]] = True
    return mask


def compare_at_equal_exit_rates(conf, softmax, exit_pred, final_pred, y,
                                rates: Sequence[float] = DEFAULT_RATES) -> dict:
    """Overall accuracy (exit's answer when exiting, else the final one) when each score sends the same number
    of inputs (rate x N, highest scores) to the early exit."""
    n = len(y)
    rows = []
    for r in rates:
        k = int(round(r * n))
        acc = {}
        for name, s in (("confidence", conf), ("max_softmax", softmax)):
            ex = _top_k_exit(s, k)
            acc[name] = float(np.mean(np.where(ex, exit_pred, final_pred) == y))
        rows.append({"exit_rate": k / max(n, 1), **acc})
    diff = [r["confidence"] - r["max_softmax"] for r in rows]
    return {"rows": rows, "mean_difference": float(np.mean(diff)), "min_difference": float(np.min(diff)),
            "confidence_at_least_as_accurate_at_every_rate": bool(min(diff) >= 0),
            "auroc": {"confidence": _auroc(conf, exit_pred == y), "max_softmax": _auroc(softmax, exit_pred == y)}}


def _auroc(score, right) -> float | None:
    """P(score of a right exit > score of a wrong one), ties counting half."""
    s, r = np.asarray(score, np.float64), np.asarray(right, bool)
    pos, neg = s[r], s[~r]
    if not len(pos) or not len(neg):
        return None
    ranks = _rankdata(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _rankdata(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a), np.float64)
    sa = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _exit_macs(run: Run, exit_name: str) -> tuple[float, float]:
    """(MACs when ending at the exit, MACs when going on to the final exit: every segment and head), from the
    Keras graph (the same counts as the quant manifest's `macs_to_exit`)."""
    from tinyexit.models import macs_per_layer

    meta = run.model_json()
    per_layer = macs_per_layer(run.load_model())
    ex = {e["name"]: e for e in meta["exits"]}
    heads = sum(per_layer.get(n, 0) for e in meta["exits"] for n in e["head"])
    return float(ex[exit_name]["macs"]), float(meta["exits"][-1]["macs"] + heads)


def compare_run(run_dir, exit_name: str, *, source: str = "float", split: str = "test", conf_model=None,
                max_drop: float = 0.01, branch_macs: int = 0) -> dict:
    """Both policies on `split` at equal exit rates, and each calibrated on validation (lowest expected MACs
    with accuracy >= the final exit's validation accuracy - max_drop) then applied to `split`. The confidence
    policy is charged `branch_macs` more at the exit and on the way to the final exit."""
    run = as_run(run_dir)
    conf, sm, ep, fp, y = confidence_scores(run, split, exit_name=exit_name, source=source, conf_model=conf_model)
    vconf, vsm, vep, vfp, vy = confidence_scores(run, "validation", exit_name=exit_name, source=source,
                                                 conf_model=conf_model)
    m_exit, m_full = _exit_macs(run, exit_name)
    target = float(np.mean(vfp == vy)) - max_drop
    calibrated = {}
    for name, (sv, st, extra) in {"confidence": (vconf, conf, branch_macs), "max_softmax": (vsm, sm, 0)}.items():
        cal = calibrate_confidence(sv, vep, vfp, vy, m_exit + extra, m_full + extra, target)
        ex = st >= cal["threshold"] if cal["threshold"] is not None else np.zeros(len(y), bool)
        rate = float(ex.mean())
        calibrated[name] = {"threshold": cal["threshold"], "validation_accuracy": cal["accuracy"],
                            "accuracy": float(np.mean(np.where(ex, ep, fp) == y)), "exit_rate": rate,
                            "expected_macs": rate * (m_exit + extra) + (1 - rate) * (m_full + extra)}
    return {"split": split, "source": source, **compare_at_equal_exit_rates(conf, sm, ep, fp, y),
            "calibrated": {"accuracy_target": target, "rule": f"final validation accuracy - {max_drop}",
                           "macs_to_exit": m_exit, "full_macs": m_full, "branch_macs": branch_macs, **calibrated}}


def format_comparison(report: dict) -> str:
    lines = []
    for src in ("float", "int8"):
        c = report.get(src)
        if not c:
            continue
        lines.append(f"{report['exit']} on {c['split']} ({src}): overall accuracy at equal exit rates "
                     f"(AUROC of right-vs-wrong: confidence {c['auroc']['confidence'] or float('nan'):.3f}, "
                     f"max-softmax {c['auroc']['max_softmax'] or float('nan'):.3f})")
        lines.append(f"  {'exit rate':>9} {'confidence':>10} {'max-softmax':>11}")
        for r in c["rows"]:
            lines.append(f"  {r['exit_rate']:>9.2f} {r['confidence']:>10.4f} {r['max_softmax']:>11.4f}")
        lines.append(f"  mean difference {c['mean_difference']:+.4f}; at least as accurate at every rate: "
                     f"{c['confidence_at_least_as_accurate_at_every_rate']}")
        cal = c.get("calibrated")
        if cal:
            lines.append(f"  calibrated on validation for accuracy >= {cal['accuracy_target']:.4f} ({cal['rule']}):")
            for name in ("confidence", "max_softmax"):
                k = cal[name]
                lines.append(f"    {name:<12} {c['split']} accuracy {k['accuracy']:.4f}, exit rate {k['exit_rate']:.3f}, "
                             f"expected MACs {k['expected_macs']:,.0f}")
    return "\n".join(lines)


def calibrate_confidence(conf: np.ndarray, exit_pred, final_pred, y, exit_macs: float, full_macs: float,
                         accuracy_target: float) -> dict:
    """Threshold on the confidence score with the lowest expected MACs whose accuracy meets the target (as the
    search calibrates the softmax threshold). Returns {"threshold", "accuracy", "exit_rate", "expected_macs"}
    (threshold None: never exit)."""
    from tinyexit.research.search import operating_points, pick_threshold

    c = operating_points(conf, exit_pred, final_pred, y, exit_macs, full_macs)
    j = pick_threshold(c, accuracy_target)
    if j is None:
        return {"threshold": None, "accuracy": None, "exit_rate": 0.0, "expected_macs": float(full_macs)}
    t = c["threshold"][j]
    return {"threshold": None if not np.isfinite(t) else float(t), "accuracy": float(c["accuracy"][j]),
            "exit_rate": float(c["exit_rate"][j]), "expected_macs": float(c["expected_macs"][j])}



__all__ = ["DEFAULT_RATES", "confidence_scores", "compare_at_equal_exit_rates", "compare_run", "calibrate_confidence",
           "first_early_exit", "format_comparison"]
