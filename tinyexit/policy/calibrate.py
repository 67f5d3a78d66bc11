"""`tinyexit calibrate`: choose the exit threshold with distribution-free risk control.

calibrate_run(run_dir, epsilon, delta, risk="gap", method="ltt", policy="max_softmax", source="int8")
  1. outputs of every exit on the calibration split (validation) and the test split: the int8 pieces of
     RUN/quant run on tflite_micro (source "int8": what the firmware will compute) or the float Keras model;
  2. for every threshold of the policy's grid (for int8 max-softmax: every int8 code, 127 down to -128),
     the loss of each calibration input (risk "gap" or "consistency", see risk.py);
  3. the threshold certified by `method` (ltt, ucb, crc), shared by all early exits;
  4. test risk, exit rate, accuracy, mean MACs per inference and the saving vs the model without exits;
  5. RUN/policy.json and RUN/calibration.png (accuracy vs mean MACs over the sweep, the chosen point, the
     no-exit model).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import save_figure, write_json
from tinyexit.policy import risk as R
from tinyexit.policy.decisions import STATIC_POLICIES, QParams, argmax_first
from tinyexit.run import Run

POLICIES = (*STATIC_POLICIES, "confidence", "patience", "difference")


def policy_grid(policy: str, qp: QParams, num_classes: int) -> np.ndarray:
    cls = STATIC_POLICIES[policy]
    if policy == "entropy":
        return cls.grid(qp, num_classes=num_classes)
    return cls.grid(qp)


def exit_masks(policy: str, outputs: list[np.ndarray], qparams: list[QParams], grid: np.ndarray,
               source: str) -> list[np.ndarray]:
    """masks[k][i, j]: early exit k passes grid threshold j on input i, decided as the firmware decides
    (integer statistic against the integer threshold) for int8 outputs."""
    cls = STATIC_POLICIES[policy]
    masks = []
    for out, qp in zip(outputs[:-1], qparams[:-1]):
        probe = cls(0.0)
        if source == "int8":
            stat = probe.statistic_q(out, qp)
            thr = np.array([cls(float(t)).threshold_q(qp) for t in grid], np.int64)
        else:
            stat = probe.statistic(out)
            thr = np.asarray(grid, np.float64)
        masks.append(probe._cmp(stat[:, None], thr[None, :]))
    return masks


def sweep(masks: list[np.ndarray], preds: list[np.ndarray], y: np.ndarray, exit_macs: list[int]) -> dict:
    """For every grid threshold: accuracy, exit rate and mean MACs of the early-exit system."""
    final = preds[-1]
    n = len(final)
    g = masks[0].shape[1]
    k_final = len(preds) - 1
    exit_index = np.full((n, g), k_final, np.int64)
    for k in range(k_final - 1, -1, -1):
        exit_index[masks[k]] = k
    answer = np.choose(exit_index, [np.broadcast_to(p[:, None], (n, g)) for p in preds])
    macs = np.asarray(exit_macs, np.float64)[exit_index]
    return {"accuracy": (answer == y[:, None]).mean(axis=0), "exit_rate": (exit_index < k_final).mean(axis=0),
            "mean_macs": macs.mean(axis=0), "never_macs": float(exit_macs[-1])}


def _choose(grid: np.ndarray, cal: tuple, test: tuple, exit_macs: list[int], no_exit_macs: int, *, risk: str,
            method: str, epsilon: float, delta: float) -> dict:
    """Select the grid threshold with `method` on the calibration losses and evaluate it on the test split.
    `cal` and `test`: (masks, preds, labels). Returns j (-1: nothing certified, never exit early), threshold,
    sweep (the test split's threshold sweep), final_acc, and the policy file's calibration_risk, test and
    naive (for contrast: the empirical-risk choice, no guarantee) entries."""
    (cal_masks, cal_preds, cal_y), (test_masks, test_preds, test_y) = cal, test
    L_cal = R.loss_matrix(risk, cal_masks, cal_preds, cal_y)
    L_test = R.loss_matrix(risk, test_masks, test_preds, test_y)
    j = R.select(method, L_cal, epsilon, delta)
    sw = sweep(test_masks, test_preds, test_y, exit_macs)
    final_acc = float(np.mean(test_preds[-1] == test_y))
    if j >= 0:
        threshold = float(grid[j])
        t_risk, t_rate = float(L_test[:, j].mean()), float(sw["exit_rate"][j])
        t_acc, t_macs = float(sw["accuracy"][j]), float(sw["mean_macs"][j])
        cal_risk = float(L_cal[:, j].mean())
    else:  # nothing certified: never exit early
        threshold = None
        t_risk, t_rate, t_acc, t_macs, cal_risk = 0.0, 0.0, final_acc, float(exit_macs[-1]), 0.0
    jn = R.select("naive", L_cal, epsilon, delta)
    return {"j": j, "threshold": threshold, "sweep": sw, "final_acc": final_acc, "calibration_risk": cal_risk,
            "test": {"size": int(len(test_y)), "risk": t_risk, "exit_rate": t_rate, "accuracy": t_acc,
                     "final_accuracy": final_acc, "mean_macs": t_macs, "no_exit_macs": no_exit_macs,
                     "macs_saving": 1.0 - t_macs / no_exit_macs},
            "naive": {"threshold": float(grid[jn]) if jn >= 0 else None,
                      "test_risk": float(L_test[:, jn].mean()) if jn >= 0 else 0.0,
                      "exit_rate": float(sw["exit_rate"][jn]) if jn >= 0 else 0.0}}


def _outputs(run: Run, split: str, source: str, model_cache: dict) -> tuple[list[np.ndarray], np.ndarray]:
    x, y = run.split(split)
    if source == "int8":
        if "pipe" not in model_cache:
            model_cache["pipe"] = run.oracle()
        return model_cache["pipe"].run(x), np.asarray(y)
    if "keras" not in model_cache:
        model_cache["keras"] = run.load_model()
    out = model_cache["keras"].predict(x, batch_size=256, verbose=0)
    return (list(out) if isinstance(out, (list, tuple)) else [out]), np.asarray(y)


def calibrate_run(run_dir: str | os.PathLike, *, epsilon: float = 0.02, delta: float = 0.1, risk: str = "gap",
                  method: str = "ltt", policy: str = "max_softmax", source: str = "int8",
                  calibration_split: str = "validation", log: Callable[[str], None] | None = None,
                  confidence: dict | None = None, stream_scenes: float = 5.0, stream_length: int | None = None,
                  gate: float | None = None, reference: str = "scene", stream_seed: int = 0) -> dict:
    """Choose the threshold, write RUN/policy.json and RUN/calibration.png; returns the policy dict.
    policy "confidence": the learned confidence head (tinyexit.research.confidence), trained or reused first;
    `confidence` holds the options of `tinyexit.research.confidence.ensure_confidence` (train_on, fraction, epochs,
    hidden, seed, retrain). policy "patience" / "difference": the temporal rules on scene streams of mean
    `stream_scenes` inputs per scene (`stream_length` inputs, default the split's size), optionally AND a
    max-softmax `gate`; see calibrate_temporal (no guarantee applies to them)."""
    log = log or (lambda s: None)
    run = Run(run_dir)
    if risk not in R.RISKS:
        raise TinyexitError(f"unknown risk '{risk}'; choose one of {', '.join(R.RISKS)}")
    if method not in R.METHODS:
        raise TinyexitError(f"unknown method '{method}'; choose one of {', '.join(R.METHODS)}")
    if policy not in POLICIES:
        raise TinyexitError(f"unknown policy '{policy}'; choose one of {', '.join(POLICIES)}")
    if source not in ("int8", "float"):
        raise TinyexitError("source must be 'int8' or 'float'")
    if not 0 < epsilon < 1 or not 0 < delta < 1:
        raise TinyexitError(f"--epsilon and --delta must lie strictly between 0 and 1 (got {epsilon}, {delta})")
    man = run.manifest()
    exits = man["exits"]
    if len(exits) < 2:
        raise TinyexitError("the model has no early exit: nothing to calibrate")
    if policy == "confidence":
        if source != "int8":
            raise TinyexitError("the confidence policy is calibrated on the int8 models the firmware runs; "
                                "drop --source float")
        if calibration_split != "validation":
            raise TinyexitError("the confidence policy calibrates on the validation inputs its head was not "
                                "trained on; keep calibration_split='validation'")
        return _calibrate_confidence(run, man, epsilon=epsilon, delta=delta, risk=risk, method=method,
                                     options=dict(confidence or {}), log=log)
    cache: dict = {}
    if policy in ("patience", "difference"):
        if source != "int8" or calibration_split != "validation":
            raise TinyexitError(f"the {policy} policy is calibrated on the int8 outputs of the validation split; "
                                f"drop --source float")
        from tinyexit.policy.calibrate_temporal import calibrate_temporal
        return calibrate_temporal(run, man, policy, epsilon=epsilon, delta=delta, risk=risk, method=method,
                                  stream_scenes=stream_scenes, stream_length=stream_length, gate=gate,
                                  reference=reference, seed=stream_seed,
                                  outputs=lambda split: _outputs(run, split, "int8", cache), log=log)
    qparams = [QParams.of(e["output"]) for e in exits]
    exit_macs = [int(e["macs_to_exit"]) for e in exits]
    no_exit_macs = int(man["no_exit_macs"])

    log(f"computing {source} outputs of every exit on the {calibration_split} and test splits")
    cal_out, cal_y = _outputs(run, calibration_split, source, cache)
    test_out, test_y = _outputs(run, "test", source, cache)
    n = len(cal_y)
    if method == "crc" and 1.0 / (n + 1) > epsilon:
        raise TinyexitError(f"conformal risk control needs at least {int(np.ceil(1 / epsilon)) - 1} calibration "
                            f"inputs for epsilon={epsilon} (have {n}); raise --epsilon or use more data")
    num_classes = int(np.asarray(cal_out[-1]).reshape(n, -1).shape[1])
    grid = policy_grid(policy, qparams[0], num_classes)

    cal_preds = [argmax_first(np.asarray(o).reshape(len(o), -1)) for o in cal_out]
    test_preds = [argmax_first(np.asarray(o).reshape(len(o), -1)) for o in test_out]
    cal_masks = exit_masks(policy, cal_out, qparams, grid, source)
    test_masks = exit_masks(policy, test_out, qparams, grid, source)
    c = _choose(grid, (cal_masks, cal_preds, cal_y), (test_masks, test_preds, test_y), exit_macs, no_exit_macs,
                risk=risk, method=method, epsilon=epsilon, delta=delta)
    threshold = c["threshold"]
    cls = STATIC_POLICIES[policy]
    never_q = {"max_softmax": 128, "margin": 256, "entropy": -1}[policy]
    per_exit = [{"name": e["name"],
                 "threshold_q": int(cls(threshold).threshold_q(qp)) if threshold is not None else never_q,
                 "output": {"scale": qp.scale, "zero_point": qp.zero_point}}
                for e, qp in zip(exits[:-1], qparams[:-1])]
    result = {
        "policy": policy,
        "exit": per_exit[0]["name"],
        "threshold": threshold,
        "threshold_q": per_exit[0]["threshold_q"],
        "exits": per_exit,
        "method": method, "risk": risk, "epsilon": epsilon, "delta": delta,
        "guarantee": R.guarantee(method),
        "source": source,
        "calibration_split": calibration_split, "calibration_size": n,
        "calibration_risk": c["calibration_risk"],
        "test": c["test"],
        "plot": run.calibration_plot.name,
        "naive": c["naive"],
    }
    _plot(run.calibration_plot, c["sweep"], c["j"], c["final_acc"], no_exit_macs, result)
    write_json(run.policy_path, result)
    return result


def _calibrate_confidence(run: Run, man: dict, *, epsilon: float, delta: float, risk: str, method: str,
                          options: dict, log: Callable[[str], None]) -> dict:
    """policy "confidence": exit at early exit k when its confidence model's int8 P(right) >= threshold_q.
    The head is trained on data disjoint from the calibration inputs: by default the first half of a seeded
    permutation of the validation split trains it, the other half calibrates the threshold (risk control
    over every int8 code, 127 .. -128, shared by all early exits). For contrast, max-softmax is calibrated
    with the same method on the same inputs and both are compared on the test split."""
    from tinyexit.research.confidence import Int8ConfidenceChain, ensure_confidence
    from tinyexit.research.confidence_eval import compare_at_equal_exit_rates
    from tinyexit.policy.decisions import LearnedConfidence, MaxSoftmax
    heads = ensure_confidence(run.path, log=log, **options)
    chain = Int8ConfidenceChain(run.path, {k: v["tflite"] for k, v in heads.items()})
    exits = man["exits"]
    early = exits[:-1]
    if [e["name"] for e in early] != list(heads):
        raise TinyexitError("the confidence heads do not match the run's early exits; re-run with --retrain")
    exit_macs = chain.macs_to_exit()
    no_exit_macs = int(man["no_exit_macs"])

    xv, yv = run.split("validation")
    excluded: set[int] = set()
    for name, meta in heads.items():
        if meta.get("train_split") == "validation":
            excluded |= set(int(i) for i in meta.get("train_indices") or [])
    cal_idx = np.array([i for i in range(len(yv)) if i not in excluded], np.int64)
    n = len(cal_idx)
    if n == 0:
        raise TinyexitError("no validation input is left for calibration: the confidence head was trained on all "
                            "of them; retrain with a smaller --confidence-fraction")
    if method == "crc" and 1.0 / (n + 1) > epsilon:
        raise TinyexitError(f"conformal risk control needs at least {int(np.ceil(1 / epsilon)) - 1} calibration "
                            f"inputs for epsilon={epsilon} (have {n}); raise --epsilon or use more data")
    log(f"int8 outputs of the exits and confidence heads on {n} held-out validation inputs and the test split")
    cal_out, cal_conf = chain.run(xv[cal_idx])
    cal_y = np.asarray(yv)[cal_idx]
    xt, test_y = run.split("test")
    test_out, test_conf = chain.run(xt)
    test_y = np.asarray(test_y)

    cqp = chain.conf_qparams
    grid = LearnedConfidence.grid(cqp[0])                 # P(right) at every int8 code, 127 .. -128

    def masks(confs):
        res = []
        for c, qp in zip(confs, cqp):
            thr = np.array([LearnedConfidence(float(t)).threshold_q(qp) for t in grid], np.int64)
            res.append(LearnedConfidence.statistic_q(c)[:, None] >= thr[None, :])
        return res

    cal_preds = [argmax_first(o) for o in cal_out]
    test_preds = [argmax_first(o) for o in test_out]
    cal_masks, test_masks = masks(cal_conf), masks(test_conf)
    c = _choose(grid, (cal_masks, cal_preds, cal_y), (test_masks, test_preds, test_y), exit_macs, no_exit_macs,
                risk=risk, method=method, epsilon=epsilon, delta=delta)
    threshold, final_acc = c["threshold"], c["final_acc"]
    pol = LearnedConfidence(threshold if threshold is not None else math.inf)
    per_exit = []
    for e, qp, cq, cm in zip(early, [QParams.of(e["output"]) for e in early], cqp, chain.conf_macs):
        per_exit.append({"name": e["name"], "threshold_q": int(pol.threshold_q(cq)),
                         "output": qp.to_json(),
                         "confidence": {"file": str(Path(heads[e["name"]]["tflite"]).relative_to(run.path)),
                                        "output": QParams.of(cq).to_json(), "index": 1, "macs": cm}})
    res_test = pol.evaluate_q(test_out, test_conf, cqp, exit_macs)
    if res_test.exit_rate != c["test"]["exit_rate"]:   # the firmware's rule must give the sweep's point
        raise TinyexitError("internal: the confidence rule and the threshold sweep disagree; please report this")
    first = next(iter(heads.values()))
    result = {
        "policy": "confidence",
        "exit": per_exit[0]["name"],
        "threshold": threshold,
        "threshold_q": per_exit[0]["threshold_q"],
        "model": per_exit[0]["confidence"]["file"],
        "exits": per_exit,
        "rule": "exit at early exit k when confidence_k(exit point map)[1] >= threshold_q (int8 P(right)); the "
                "exit head answers (argmax); exits tried in order, else the final exit",
        "macs_to_exit": exit_macs,
        "method": method, "risk": risk, "epsilon": epsilon, "delta": delta,
        "guarantee": R.guarantee(method),
        "source": "int8",
        "calibration_split": "validation", "calibration_size": n,
        "calibration_indices": "validation inputs not used to train the confidence heads"
                               if excluded else "all validation inputs (the heads were trained on the train split)",
        "calibration_risk": c["calibration_risk"],
        "confidence_training": {k: first.get(k) for k in ("train_split", "train_fraction", "train_size", "epochs",
                                                          "hidden", "seed")},
        "test": c["test"],
        "plot": run.calibration_plot.name,
        "naive": c["naive"],
    }

    # For contrast: max-softmax with the same method on the same calibration inputs (no confidence model run).
    qps = [QParams.of(e["output"]) for e in exits]
    ms_grid = MaxSoftmax.grid(qps[0])
    ms_cal = exit_masks("max_softmax", cal_out, qps, ms_grid, "int8")
    ms_test = exit_masks("max_softmax", test_out, qps, ms_grid, "int8")
    jm = R.select(method, R.loss_matrix(risk, ms_cal, cal_preds, cal_y), epsilon, delta)
    man_macs = [int(e["macs_to_exit"]) for e in exits]
    ms_sw = sweep(ms_test, test_preds, test_y, man_macs)
    ms_L = R.loss_matrix(risk, ms_test, test_preds, test_y)
    same = {"threshold": float(ms_grid[jm]) if jm >= 0 else None,
            "test_risk": float(ms_L[:, jm].mean()) if jm >= 0 else 0.0,
            "exit_rate": float(ms_sw["exit_rate"][jm]) if jm >= 0 else 0.0,
            "accuracy": float(ms_sw["accuracy"][jm]) if jm >= 0 else final_acc,
            "mean_macs": float(ms_sw["mean_macs"][jm]) if jm >= 0 else float(man_macs[-1])}
    eq = compare_at_equal_exit_rates(LearnedConfidence.statistic_q(test_conf[0]),
                                     test_out[0].astype(np.int64).max(axis=1), test_preds[0], test_preds[-1], test_y)
    result["max_softmax_same_calibration"] = same
    result["equal_exit_rate_test"] = {
        "exit": per_exit[0]["name"],
        "note": "overall test accuracy when each int8 score sends its highest-scored inputs to the first early "
                "exit (ties broken by input order; max-softmax codes saturate at 127)",
        **eq}
    _plot(run.calibration_plot, c["sweep"], c["j"], final_acc, no_exit_macs, result)
    write_json(run.policy_path, result)
    return result


def _plot(path: Path, sw: dict, j: int, final_acc: float, no_exit_macs: int, result: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    macs = np.r_[sw["never_macs"], sw["mean_macs"]]      # the sweep starts at "never exit" (most conservative)
    acc = np.r_[final_acc, sw["accuracy"]]
    ax.plot(macs / 1e6, 100 * acc, ".-", ms=3, lw=1, label="threshold sweep (test)")
    ax.plot([no_exit_macs / 1e6], [100 * final_acc], "s", color="k", label="no-exit model")
    t = result["test"]
    label = (f"{result['method']}, {result['risk']} risk <= {result['epsilon']:g} (delta {result['delta']:g})"
             if j >= 0 else "chosen: never exit")
    ax.plot([t["mean_macs"] / 1e6], [100 * t["accuracy"]], "*", ms=14, color="tab:red", label=label)
    ax.set_xlabel("mean MACs per inference (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{result['policy']} exit policy ({result['source']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
