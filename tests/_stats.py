"""Statistical assertions for learning tests: a claim about what training achieved, tested with a proper test,
not a threshold that a lucky or unlucky seed crosses.

Learning tests draw their seeds through `seed(k)`: TINYEXIT_TEST_SEED=s shifts every seed by s, so a test's claim
can be checked over several seeds (`for s in 0 1 2 3 4; do TINYEXIT_TEST_SEED=$s pytest tests/test_x.py; done`).
"""
from __future__ import annotations

import os

import numpy as np

SEED_OFFSET = int(os.environ.get("TINYEXIT_TEST_SEED", "0"))
ALPHA = 1e-3  # one-sided level: a model that only guesses fails such an assertion once in a thousand runs


def seed(k: int = 0) -> int:
    """The k-th seed of a learning test, shifted by TINYEXIT_TEST_SEED."""
    return k + 1000 * SEED_OFFSET


def beats_chance_pvalue(correct, chance: float) -> float:
    from scipy.stats import binomtest

    correct = np.asarray(correct, bool).ravel()
    return float(binomtest(int(correct.sum()), int(correct.size), chance, alternative="greater").pvalue)


def assert_beats_chance(correct, chance: float, what: str, alpha: float = ALPHA) -> None:
    """H0: the predictions are right with probability `chance` (guessing). Reject at level alpha, one-sided."""
    correct = np.asarray(correct, bool).ravel()
    p = beats_chance_pvalue(correct, chance)
    assert p < alpha, (f"{what}: {int(correct.sum())}/{correct.size} right ({correct.mean():.3f}) does not beat "
                       f"chance {chance:.3f} (binomial p = {p:.2g} >= {alpha})")


def assert_accuracy_beats_chance(accuracy: float, n: int, chance: float, what: str, alpha: float = ALPHA) -> None:
    """The same test from a reported accuracy over n examples."""
    k = int(round(accuracy * n))
    assert_beats_chance(np.arange(n) < k, chance, what, alpha)


def assert_not_significantly_worse(ok, ref_ok, what: str, alpha: float = ALPHA) -> None:
    """Paired claim on the same inputs: `ok` is not worse than `ref_ok`. Exact one-sided McNemar test: among the
    inputs where exactly one is right, H0 says each is right half the time; fail only when `ref_ok` wins the
    discordant pairs so often that H0 is rejected at level alpha."""
    from scipy.stats import binomtest

    ok, ref_ok = np.asarray(ok, bool).ravel(), np.asarray(ref_ok, bool).ravel()
    ref_wins, wins = int(np.sum(ref_ok & ~ok)), int(np.sum(ok & ~ref_ok))
    if ref_wins + wins == 0:
        return
    p = float(binomtest(ref_wins, ref_wins + wins, 0.5, alternative="greater").pvalue)
    assert p >= alpha, (f"{what}: worse on {ref_wins} inputs, better on {wins} (accuracy {ok.mean():.4f} vs "
                        f"{ref_ok.mean():.4f}); McNemar p = {p:.2g} < {alpha}")
