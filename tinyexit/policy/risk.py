"""Distribution-free risk control of the exit threshold (Jazbec et al., "Fast yet Safe: Early-Exiting with
Risk Control", after Angelopoulos et al.'s Learn-then-Test and conformal risk control, Bates et al.'s RCPS).

Set-up. A threshold grid lambda_0 > lambda_1 > ... (most conservative first: index 0 exits least). For
calibration input i and grid index j, the loss L[i, j] in [0, 1] compares the early-exit system at lambda_j
with the full model; it is 0 when the input does not exit early (then both predict alike):
    consistency: 1[exit prediction != final prediction]
    gap:         max(0, 1[exit prediction wrong] - 1[final prediction wrong])
The risk R(lambda) = E[L] is the fraction of *all* inputs that an early exit spoils.
Every method returns a grid index, or -1 when no threshold is certified (never exit early).

    ltt    Learn-then-Test: Hoeffding-Bentkus p-values of H_j: R(lambda_j) > epsilon, fixed-sequence testing
           from index 0 at level delta; returns the last index rejected before the first failure.
           P(R(lambda_hat) > epsilon) <= delta. Needs no monotonicity.
    ucb    Upper confidence bound (RCPS): the Hoeffding-Bentkus upper bound of R(lambda_j) at level delta,
           the last index before the first one whose bound reaches epsilon. Same guarantee as ltt for a
           monotone risk; it is the inversion of the same test, so the two agree (the tests check it).
    crc    Conformal risk control on the monotonised loss (running max over the grid):
           the last index with n/(n+1) R_hat + B/(n+1) <= epsilon. Guarantee in expectation:
           E[R(lambda_hat)] <= epsilon (delta is not used).
    naive  the last index (in the same fixed sequence) whose empirical risk is <= epsilon: no guarantee;
           kept to show what the others protect against.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

METHODS = ("ltt", "ucb", "crc")
RISKS = ("gap", "consistency")


# ---------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------

def loss(risk: str, pred: np.ndarray, final_pred: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Per-input loss of answering `pred` instead of the full model's `final_pred` (broadcasts)."""
    if risk == "consistency":
        return (pred != final_pred).astype(np.float64)
    if risk == "gap":
        if y is None:
            raise ValueError("the gap risk needs labels")
        return np.maximum(0.0, (pred != y).astype(np.float64) - (final_pred != y).astype(np.float64))
    raise ValueError(f"unknown risk '{risk}' (choose from {', '.join(RISKS)})")


def loss_matrix(risk: str, exit_masks: list[np.ndarray], preds: list[np.ndarray], y: np.ndarray | None) -> np.ndarray:
    """L[i, j] for a shared threshold over the grid.

    exit_masks[k][i, j]: early exit k's statistic passes grid threshold j on input i (k < K-1);
    preds[k][i]: prediction of exit k (final last). The earliest passing exit answers."""
    final = np.asarray(preds[-1])
    n = len(final)
    g = exit_masks[0].shape[1] if exit_masks else 1
    answer = np.broadcast_to(final[:, None], (n, g)).copy()
    decided = np.zeros((n, g), bool)
    for mask, pred in zip(exit_masks, preds[:-1]):
        take = mask & ~decided
        answer[take] = np.broadcast_to(np.asarray(pred)[:, None], (n, g))[take]
        decided |= mask
    yy = None if y is None else np.asarray(y)[:, None]
    return loss(risk, answer, final[:, None], yy)


# ---------------------------------------------------------------------------------------------------------
# Hoeffding-Bentkus p-values and bounds
# ---------------------------------------------------------------------------------------------------------

def _kl_bernoulli(a, b):
    a = np.asarray(a, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / b), 0.0)
        t2 = np.where(a < 1, (1 - a) * np.log(np.where(a < 1, 1 - a, 1) / (1 - b)), 0.0)
    return t1 + t2


def hb_p_value(risk_hat, n: int, alpha) -> np.ndarray:
    """p-value of H0: R > alpha given the empirical risk of n i.i.d. losses in [0, 1]:
    min(exp(-n h(min(R_hat, alpha), alpha)), e * P(Binomial(n, alpha) <= ceil(n R_hat)))."""
    r = np.asarray(risk_hat, np.float64)
    alpha = np.asarray(alpha, np.float64)
    hoeffding = np.exp(-n * _kl_bernoulli(np.minimum(r, alpha), alpha))
    bentkus = math.e * stats.binom.cdf(np.ceil(n * r - 1e-9), n, alpha)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)


def hb_ucb(risk_hat, n: int, delta: float, iters: int = 60) -> np.ndarray:
    """Upper confidence bound at level delta: sup{alpha : hb_p_value(R_hat, n, alpha) > delta}
    (bisection; the p-value decreases in alpha above R_hat)."""
    r = np.atleast_1d(np.asarray(risk_hat, np.float64))
    lo = r.copy()
    hi = np.ones_like(r)
    for _ in range(iters):
        mid = (lo + hi) / 2
        rejected = hb_p_value(r, n, mid) <= delta
        hi = np.where(rejected, mid, hi)
        lo = np.where(rejected, lo, mid)
    return hi


# ---------------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------------

def _last_before_failure(ok: np.ndarray) -> int:
    """Index of the last True of the leading run of Trues (-1 if ok[0] is False)."""
    ok = np.asarray(ok, bool)
    fail = np.flatnonzero(~ok)
    return (len(ok) if len(fail) == 0 else int(fail[0])) - 1


def select_ltt(L: np.ndarray, epsilon: float, delta: float) -> int:
    n = L.shape[0]
    return _last_before_failure(hb_p_value(L.mean(axis=0), n, epsilon) <= delta)


def select_ucb(L: np.ndarray, epsilon: float, delta: float) -> int:
    return _last_before_failure(hb_ucb(L.mean(axis=0), L.shape[0], delta) < epsilon)


def select_crc(L: np.ndarray, epsilon: float, bound: float = 1.0) -> int:
    n = L.shape[0]
    monotone = np.maximum.accumulate(L, axis=1)  # non-decreasing as the threshold falls
    rhat = monotone.mean(axis=0)
    return _last_before_failure(n / (n + 1) * rhat + bound / (n + 1) <= epsilon)


def select_naive(L: np.ndarray, epsilon: float) -> int:
    return _last_before_failure(L.mean(axis=0) <= epsilon)


def select(method: str, L: np.ndarray, epsilon: float, delta: float) -> int:
    """Grid index certified by `method` on the calibration losses L [n, grid], or -1 (never exit)."""
    L = np.asarray(L, np.float64)
    if L.ndim != 2 or L.shape[0] == 0:
        raise ValueError("losses must be a non-empty [n, grid] array")
    if not 0 < epsilon < 1 or not 0 < delta < 1:
        raise ValueError("epsilon and delta must lie in (0, 1)")
    if method == "ltt":
        return select_ltt(L, epsilon, delta)
    if method == "ucb":
        return select_ucb(L, epsilon, delta)
    if method == "crc":
        return select_crc(L, epsilon)
    if method == "naive":
        return select_naive(L, epsilon)
    raise ValueError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")


def guarantee(method: str) -> str:
    return {"ltt": "P(risk > epsilon) <= delta", "ucb": "P(risk > epsilon) <= delta",
            "crc": "E[risk] <= epsilon", "naive": "none"}[method]
