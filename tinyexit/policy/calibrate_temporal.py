"""`tinyexit calibrate RUN --policy patience|difference`: the temporal rules' parameter on validation streams.

The int8 outputs of every exit on the validation and test splits (the pieces the firmware runs) are arranged
into scene streams (policy/streams.py: scenes of one class, geometric lengths of mean `stream_scenes`); for
every parameter of the grid, most conservative first (patience k = 20 .. 1; difference: Euclidean distances
0 .. sqrt(2) between probability vectors, as integer squared distances), the integer rule the firmware runs
(decisions.temporal_decide_q, optionally AND a max-softmax gate) gives a loss per stream input (risk "gap" or
"consistency"), and `method` (ltt, ucb, crc) selects the parameter as for the static rules.

No guarantee: the methods' bounds hold for exchangeable (i.i.d.) losses, and the losses of a stream are not:
consecutive inputs share a scene and each decision depends on the earlier ones (the rule's state). The
selection is the same procedure, an empirical control on the validation stream; policy.json says so.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import write_json
from tinyexit.policy import risk as R
from tinyexit.policy.decisions import (NEVER, DifferenceDetection, MaxSoftmax, QParams, argmax_first,
                                       temporal_decide_q)
from tinyexit.policy.streams import scene_stream

TEMPORAL_RULES = ("patience", "difference")
PATIENCE_MAX = 20
DIFFERENCE_STEPS = 128
NO_GUARANTEE = ("none: the inputs of a stream are not exchangeable (consecutive inputs share a scene and each "
                "decision depends on the rule's state), so the method's bound does not hold; the parameter is "
                "the method's choice on the validation stream's losses (an empirical control)")


def temporal_grid(kind: str, qp: QParams) -> list[tuple[float | None, int]]:
    """[(float parameter, integer parameter)], most conservative first."""
    if kind == "patience":
        return [(float(k), k) for k in range(PATIENCE_MAX, 0, -1)]
    grid, seen = [], set()
    for t in np.linspace(0.0, math.sqrt(2.0), DIFFERENCE_STEPS + 1):
        d2 = DifferenceDetection(float(t)).threshold_q(qp)
        if d2 not in seen:
            seen.add(d2)
            grid.append((float(t), d2))
    return grid


def stream_losses(kind: str, grid, first, final_pred, y, gate: int, exit_macs, risk: str, reference: str):
    """L [n, grid] and per grid point (exit rate, accuracy, mean MACs) of the rule on one stream."""
    L = np.zeros((len(y), len(grid)))
    stats = []
    for j, (_, p) in enumerate(grid):
        r = temporal_decide_q(kind, first, final_pred, p, gate, exit_macs, reference)
        L[:, j] = R.loss(risk, r.decision, final_pred, y)
        stats.append((r.exit_rate, r.accuracy(y), r.mean_macs))
    return L, stats


def calibrate_temporal(run, man: dict, kind: str, *, epsilon: float, delta: float, risk: str, method: str,
                       stream_scenes: float, stream_length: int | None, gate: float | None, reference: str,
                       seed: int, outputs: Callable, log: Callable[[str], None]) -> dict:
    """Choose the temporal rule's parameter; write RUN/policy.json; return it. `outputs(split)` gives the int8
    outputs of every exit and the labels of a split."""
    if kind not in TEMPORAL_RULES:
        raise TinyexitError(f"unknown temporal policy '{kind}'; choose one of {', '.join(TEMPORAL_RULES)}")
    if not stream_scenes >= 1:
        raise TinyexitError(f"--stream-scenes must be >= 1 (mean inputs per scene; got {stream_scenes})")
    if stream_length is not None and stream_length < 1:
        raise TinyexitError(f"--stream-length must be >= 1 (got {stream_length})")
    if gate is not None and not 0.0 <= gate <= 1.0:
        raise TinyexitError(f"--gate is a max-softmax probability between 0 and 1 (got {gate})")
    if reference not in ("scene", "previous"):
        raise TinyexitError(f"--reference must be 'scene' or 'previous' (got {reference!r})")
    exits = man["exits"]
    qparams = [QParams.of(e["output"]) for e in exits]
    exit_macs = [int(e["macs_to_exit"]) for e in exits]
    no_exit_macs = int(man["no_exit_macs"])
    gate_q = MaxSoftmax(gate).threshold_q(qparams[0]) if gate is not None else -128
    grid = temporal_grid(kind, qparams[0])

    def on_stream(split: str, s: int):
        out, y = outputs(split)
        idx = scene_stream(y, stream_length or len(y), stream_scenes, seed=s)
        flat = [np.asarray(o).reshape(len(o), -1) for o in out]
        first, final_pred = flat[0][idx], argmax_first(flat[-1])[idx]
        L, st = stream_losses(kind, grid, first, final_pred, np.asarray(y)[idx], gate_q, exit_macs, risk, reference)
        return L, st, float(np.mean(final_pred == np.asarray(y)[idx])), len(idx)

    log(f"int8 outputs of every exit on scene streams (mean {stream_scenes:g} inputs per scene) of the validation "
        f"and test splits; {kind} over {len(grid)} parameters")
    L_cal, _, _, n = on_stream("validation", seed)
    L_test, st_test, final_acc, n_test = on_stream("test", seed + 1)
    if method == "crc" and 1.0 / (n + 1) > epsilon:
        raise TinyexitError(f"conformal risk control needs at least {int(np.ceil(1 / epsilon)) - 1} calibration "
                            f"inputs for epsilon={epsilon} (have {n}); raise --epsilon or use a longer stream")
    j = R.select(method, L_cal, epsilon, delta)
    jn = R.select("naive", L_cal, epsilon, delta)
    if j >= 0:
        param, param_q = grid[j]
        rate, acc, macs = st_test[j]
        t_risk, cal_risk, first_q = float(L_test[:, j].mean()), float(L_cal[:, j].mean()), gate_q
    else:   # nothing selected: never stop early (the gate no int8 code reaches), the most conservative parameter
        (param, param_q), (rate, acc, macs) = grid[0], (0.0, final_acc, float(exit_macs[-1]))
        t_risk, cal_risk, first_q = 0.0, 0.0, NEVER
    per_exit = [{"name": e["name"], "threshold_q": int(first_q if k == 0 else NEVER),
                 "output": {"scale": qp.scale, "zero_point": qp.zero_point}}
                for k, (e, qp) in enumerate(zip(exits[:-1], qparams[:-1]))]
    result = {
        "policy": kind,
        "exit": per_exit[0]["name"],
        "threshold": param if j >= 0 else None,
        **({"patience": int(param_q)} if kind == "patience" else {"distance_q": int(param_q), "reference": reference}),
        "max_softmax": gate,
        "threshold_q": per_exit[0]["threshold_q"],
        "exits": per_exit,
        "rule": (f"{kind} on the first early exit over consecutive inputs (tx_temporal.h) AND max-softmax gate "
                 f"max q >= threshold_q there (-128: no gate, 128: never stop early); later exits never stop"),
        "macs_to_exit": exit_macs,
        "method": method, "risk": risk, "epsilon": epsilon, "delta": delta,
        "selected": j >= 0,
        "guarantee": NO_GUARANTEE,
        "source": "int8",
        "calibration_split": "validation", "calibration_size": n,
        "stream": {"mean_scene": stream_scenes, "length": stream_length, "seed": seed},
        "calibration_risk": cal_risk,
        "test": {"size": n_test, "stream": True, "risk": t_risk, "exit_rate": rate, "accuracy": acc,
                 "final_accuracy": final_acc, "mean_macs": macs, "no_exit_macs": no_exit_macs,
                 "macs_saving": 1.0 - macs / no_exit_macs},
        "naive": {"threshold": grid[jn][0] if jn >= 0 else None,
                  "test_risk": float(L_test[:, jn].mean()) if jn >= 0 else 0.0,
                  "exit_rate": st_test[jn][0] if jn >= 0 else 0.0},
    }
    write_json(run.policy_path, result)
    return result
