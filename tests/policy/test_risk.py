"""Risk control: p-values and bounds against exact computations, selection rules by hand, and the
guarantees checked statistically on synthetic scores with a known risk curve."""
import math
from fractions import Fraction

import numpy as np
import pytest

from tinyexit.policy import risk as R


def exact_binom_cdf(k, n, p):
    p = Fraction(p)
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("losses, n, alpha", [(10, 1000, 0.02), (0, 200, 0.05), (3, 50, 0.1), (30, 1000, 0.02)])
def test_hb_p_value_matches_the_formula(losses, n, alpha):
    r = losses / n
    a = min(r, alpha)
    kl = (a * math.log(a / alpha) if a > 0 else 0.0) + (1 - a) * math.log((1 - a) / (1 - alpha))
    expected = min(math.exp(-n * kl), math.e * exact_binom_cdf(losses, n, alpha), 1.0)
    assert R.hb_p_value(r, n, alpha) == pytest.approx(expected, rel=1e-9)


def test_hb_ucb_inverts_the_p_value():
    n, delta = 500, 0.1
    for r in (0.0, 0.01, 0.05, 0.3):
        u = R.hb_ucb(r, n, delta)[0]
        assert r < u < 1
        assert R.hb_p_value(r, n, u * (1 + 1e-6)) <= delta < R.hb_p_value(r, n, u * (1 - 1e-6))


def test_loss_matrix_by_hand():
    # 3 inputs, 2 early exits, grid of 2 thresholds; y = [0, 1, 2]
    y = np.array([0, 1, 2])
    preds = [np.array([0, 0, 1]), np.array([1, 0, 2]), np.array([1, 1, 2])]   # exit1, exit2, final
    m1 = np.array([[False, True], [False, True], [False, False]])
    m2 = np.array([[True, True], [False, True], [False, True]])
    # grid 0: input0 exits at exit2 (pred 1), others final -> answers [1, 1, 2]
    # grid 1: input0 exit1 (0), input1 exit1 (0), input2 exit2 (2) -> answers [0, 0, 2]
    cons = R.loss_matrix("consistency", [m1, m2], preds, y)
    gap = R.loss_matrix("gap", [m1, m2], preds, y)
    assert cons.tolist() == [[0, 1], [0, 1], [0, 0]]
    # final: [1, 1, 2] vs y: wrong, right, right.  grid 1 answers [0, 0, 2]: right, wrong, right
    assert gap.tolist() == [[0, 0], [0, 1], [0, 0]]


def test_selection_rules_by_hand():
    # 9 inputs; grid columns carry 0, 1, 2, 1 losses (column 3 breaks monotonicity on purpose)
    L = np.zeros((9, 4))
    L[0, 1] = 1
    L[0, 2] = L[1, 2] = 1
    L[2, 3] = 1
    # CRC, B = 1, eps = 0.2: 9/10 R + 1/10 <= 0.2 <=> R <= 1/9; monotonised column 3 has 3 losses (0, 1, 2)
    assert R.select("crc", L, 0.2, 0.1) == 1
    # naive: empirical risks 0, 1/9, 2/9, 1/9 <= 0.2 -> stops at the first failure (index 2)
    assert R.select("naive", L, 0.2, 0.1) == 1
    assert R.select("naive", L, 0.25, 0.1) == 3
    # LTT with n = 9 certifies nothing at eps = 0.2, delta = 0.1 (p-value of zero losses: e * 0.8^9 = 0.37)
    assert R.select("ltt", L, 0.2, 0.1) == -1
    assert R.hb_p_value(0.0, 9, 0.2) == pytest.approx(min(1.0, math.exp(-9 * -math.log(0.8)), math.e * 0.8 ** 9))


def test_ltt_and_ucb_certify_the_same_threshold():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n, g = int(rng.integers(200, 2000)), 60
        s = rng.uniform(size=n)
        b = rng.uniform(size=n) < rng.uniform(0.05, 0.6) * (1 - s)
        L = (s[:, None] >= np.linspace(1, 0, g)[None, :]) & b[:, None]
        assert R.select("ltt", L, 0.03, 0.1) == R.select("ucb", L, 0.03, 0.1)


# ----------------------------------------------------------------------------------------- statistics
# Scores s ~ U(0, 1); an input that exits (s >= lambda) is spoiled with probability 0.3 (1 - s)^2, so the
# true risk is R(lambda) = int_lambda^1 0.3 (1 - s)^2 ds = 0.1 (1 - lambda)^3, known exactly.

EPS, DELTA, N_CAL, TRIALS = 0.02, 0.1, 1000, 300
GRID = np.linspace(1.0, 0.0, 201)
TRUE_RISK = 0.1 * (1 - GRID) ** 3


@pytest.fixture(scope="module")
def chosen_risks():
    rng = np.random.default_rng(2024)
    out = {m: np.empty(TRIALS) for m in ("ltt", "ucb", "crc", "naive")}
    for t in range(TRIALS):
        s = rng.uniform(size=N_CAL)
        bad = rng.uniform(size=N_CAL) < 0.3 * (1 - s) ** 2
        L = (s[:, None] >= GRID[None, :]) & bad[:, None]
        for m in out:
            j = R.select(m, L, EPS, DELTA)
            out[m][t] = 0.0 if j < 0 else TRUE_RISK[j]
    return out


def upper_binomial_quantile(p, n=TRIALS, level=0.999):
    """Largest count a Binomial(n, p) exceeds with probability < 1 - level (the sampling margin)."""
    k, cdf = 0, 0.0
    while True:
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf >= level:
            return k
        k += 1


@pytest.mark.parametrize("method", ["ltt", "ucb"])
def test_high_probability_control(chosen_risks, method):
    violations = int(np.sum(chosen_risks[method] > EPS))
    assert violations <= upper_binomial_quantile(DELTA)      # frequency <= delta + sampling margin
    naive = int(np.sum(chosen_risks["naive"] > EPS))
    assert naive > upper_binomial_quantile(DELTA)             # the naive choice breaks the guarantee
    assert naive > 3 * max(violations, 1)
    # and the certified thresholds are not vacuous: they exit on a fair share of inputs
    assert np.median(chosen_risks[method]) > EPS / 4


def test_crc_controls_the_expected_risk(chosen_risks):
    r = chosen_risks["crc"]
    assert r.mean() <= EPS + 3 * r.std(ddof=1) / math.sqrt(TRIALS)
    assert r.mean() > EPS / 2      # and it is tight (CRC is nearly exact in expectation)


def test_bad_arguments_are_refused():
    L = np.zeros((10, 3))
    with pytest.raises(ValueError, match="unknown method"):
        R.select("magic", L, 0.1, 0.1)
    with pytest.raises(ValueError, match="epsilon and delta"):
        R.select("ltt", L, 0.0, 0.1)
    with pytest.raises(ValueError, match="unknown risk"):
        R.loss("zero-one", np.zeros(2), np.zeros(2), None)
