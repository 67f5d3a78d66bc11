"""Exit policies on hand-made int8 / float outputs: decisions, exits and MACs computed by hand."""
import math

import numpy as np
import pytest

from tinyexit.policy import (ENTROPY_FRAC_BITS, NEVER, DifferenceDetection, Entropy, Margin, MaxSoftmax, QParams,
                             TemporalPatience, entropy_table)

SOFTMAX = QParams(1 / 256, -128)   # what the int8 softmax of TFLite produces
MACS = [100, 250]                  # ending at the exit / at the final exit


def q8(rows):
    return np.array(rows, dtype=np.int8)


@pytest.mark.parametrize("threshold, code", [
    (0.9, 103),      # (q + 128) / 256 >= 0.9  <=>  q + 128 >= 230.4  ->  231
    (0.5, 0),        # exactly representable: 128 / 256
    (0.5 + 1e-9, 1),
    (0.0, -128),
    (-1.0, -128),    # always exit
    (1.0, NEVER),    # 256 / 256 is no int8 code: never exit
])
def test_max_softmax_threshold_code(threshold, code):
    assert MaxSoftmax(threshold).threshold_q(SOFTMAX) == code


def test_max_softmax_decisions_by_hand():
    exit1 = q8([[100, -120, -128],    # p = 228/256 = 0.891: below 0.9
                [-128, 110, -128],    # 238/256: exits, class 1
                [-10, -20, -100],
                [103, 0, -128]])      # 231/256 = 0.902: exits, class 0
    final = q8([[-128, -128, 120], [120, -128, -128], [-128, 127, -128], [-128, -128, 127]])
    r = MaxSoftmax(0.9).evaluate_q([exit1, final], [SOFTMAX, SOFTMAX], MACS)
    assert r.decision.tolist() == [2, 1, 1, 0]
    assert r.exit_index.tolist() == [1, 0, 1, 0]
    assert r.macs.tolist() == [250, 100, 250, 100]
    assert r.exit_rate == 0.5 and r.mean_macs == 175.0
    assert r.accuracy([2, 1, 0, 0]) == 0.75


def test_earliest_passing_exit_wins_with_two_early_exits():
    e1 = q8([[127, -128], [0, -128], [0, -128]])     # p = 255/256, 0.5, 0.5
    e2 = q8([[-128, 127], [-128, 127], [0, -128]])   # 1.0-ish, 1.0-ish, 0.5
    fin = q8([[0, 1], [1, 0], [-5, 7]])
    r = MaxSoftmax(0.75).evaluate_q([e1, e2, fin], [SOFTMAX] * 3, [10, 30, 70])
    assert r.exit_index.tolist() == [0, 1, 2]
    assert r.decision.tolist() == [0, 1, 1]
    assert r.macs.tolist() == [10, 30, 70]


def test_margin_by_hand():
    assert Margin(0.25).threshold_q(SOFTMAX) == 64          # m / 256 >= 0.25
    assert Margin(0.25 + 1e-9).threshold_q(SOFTMAX) == 65
    exit1 = q8([[50, -14, -128],     # margin 64: exits
                [50, -13, -128],     # 63: does not
                [-128, 100, 20],     # 80: exits, class 1
                [7, 7, -128]])       # tie: margin 0, argmax to the lowest index
    final = q8([[-128, 127, -128]] * 4)
    r = Margin(0.25).evaluate_q([exit1, final], [SOFTMAX, SOFTMAX], MACS)
    assert r.exit_index.tolist() == [0, 1, 0, 1]
    assert r.decision.tolist() == [0, 1, 1, 1]


def test_entropy_table_and_decisions():
    t = entropy_table(SOFTMAX)
    assert t.shape == (256,) and t[0] == 0                          # q = -128: p = 0
    assert t[128] == round(0.5 * math.log(2) * 2 ** ENTROPY_FRAC_BITS)  # q = 0: p = 1/2
    peaked = [127, -128, -128]        # H = -(255/256) ln(255/256) = 0.0039 nats
    flat = [-43, -43, -43]            # p = 85/256 each: H = 3 * 0.332 * 1.1025 = 1.098 nats
    exit1 = q8([peaked, flat])
    final = q8([[-128, -128, 127], [-128, -128, 127]])
    h = Entropy(0.5).statistic_q(exit1, SOFTMAX)
    p = (np.array([peaked, flat], float) + 128) / 256
    exact = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=1)
    assert np.all(np.abs(h / 2 ** ENTROPY_FRAC_BITS - exact) <= 3 * 0.5 / 2 ** ENTROPY_FRAC_BITS)
    r = Entropy(0.5).evaluate_q([exit1, final], [SOFTMAX, SOFTMAX], MACS)
    assert r.exit_index.tolist() == [0, 1] and r.decision.tolist() == [0, 2]
    assert Entropy(0.5).threshold_q() == math.floor(0.5 * 2 ** 16)


@pytest.mark.parametrize("policy", [MaxSoftmax(0.7), Margin(0.3), Entropy(0.6)])
def test_int8_and_float_decisions_agree_on_dequantized_outputs(policy):
    """On probabilities that are exactly the dequantized int8 codes, the integer rule and the float rule
    decide alike (entropy: away from the rounding band of the table)."""
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(400, 5)).astype(np.int8)
    p = SOFTMAX.dequantize(q)
    a = policy.exit_mask_q(q, SOFTMAX)
    b = policy.exit_mask(p)
    if isinstance(policy, Entropy):
        far = np.abs(policy.statistic(p) - policy.threshold) > 5 * 0.5 / 2 ** ENTROPY_FRAC_BITS
        assert far.sum() > 350 and np.array_equal(a[far], b[far])
    else:
        assert np.array_equal(a, b)


def test_float_helper_by_hand():
    e = np.array([[0.95, 0.05], [0.6, 0.4]])
    f = np.array([[0.1, 0.9], [0.2, 0.8]])
    r = MaxSoftmax(0.9).evaluate([e, f], MACS)
    assert r.decision.tolist() == [0, 1] and r.exit_index.tolist() == [0, 1]


def onehot(preds, c=3):
    out = np.full((len(preds), c), -128, np.int8)
    out[np.arange(len(preds)), preds] = 127
    return out


def test_temporal_patience_by_hand():
    early = [1, 1, 1, 0, 0, 2, 0, 0]
    final = [1, 1, 2, 0, 0, 0, 0, 1]
    # t0 no decision yet: full (1), streak 1 | t1 agrees twice: exit (1) | t2 three times: exit (1)
    # t3 early 0 != 1: full (0), streak 1 | t4 exit (0) | t5 early 2: full (0), streak 0
    # t6 streak 1: full (0) | t7 streak 2: exit (0) although the final exit would say 1
    r = TemporalPatience(2).evaluate_q([onehot(early), onehot(final)], [SOFTMAX] * 2, MACS)
    assert r.decision.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert r.exit_index.tolist() == [1, 0, 0, 1, 0, 1, 1, 0]
    assert r.macs.tolist() == [250, 100, 100, 250, 100, 250, 250, 100]
    r1 = TemporalPatience(1).evaluate_q([onehot(early), onehot(final)], [SOFTMAX] * 2, MACS)
    assert r1.exit_index.tolist() == [1, 0, 0, 1, 0, 1, 0, 0]


def test_difference_detection_by_hand():
    assert DifferenceDetection(0.1).threshold_q(SOFTMAX) == 655        # (0.1 * 256)^2 = 655.36
    e = q8([[100, -100, -128],
            [110, -110, -128],     # vs t0: 100 + 100 = 200 <= 655: keep
            [120, -120, -128],     # vs t0: 400 + 400 = 800 > 655: new scene;  vs t1: 200: keep
            [-128, 127, -128]])
    f = onehot([2, 0, 1, 1])
    scene = DifferenceDetection(0.1).evaluate_q([e, f], [SOFTMAX] * 2, MACS)
    assert scene.decision.tolist() == [2, 2, 1, 1]
    assert scene.exit_index.tolist() == [1, 0, 1, 1]
    prev = DifferenceDetection(0.1, reference="previous").evaluate_q([e, f], [SOFTMAX] * 2, MACS)
    assert prev.decision.tolist() == [2, 2, 2, 1]
    assert prev.exit_index.tolist() == [1, 0, 0, 1]
    # the float twin on the dequantized outputs: same stream decisions
    fl = DifferenceDetection(0.1).evaluate([SOFTMAX.dequantize(e), SOFTMAX.dequantize(f)], MACS)
    assert fl.decision.tolist() == scene.decision.tolist()


def test_difference_threshold_code_is_exact():
    for t in np.linspace(0.0, 1.5, 301):
        d2 = DifferenceDetection(float(t)).threshold_q(SOFTMAX)
        assert math.sqrt(d2) / 256 <= t < math.sqrt(d2 + 1) / 256


def test_scene_stream_has_scenes_of_the_requested_mean_length():
    from tinyexit.policy.streams import scene_stream
    y = np.repeat(np.arange(5), 40)
    idx = scene_stream(y, 4000, 8.0, seed=1)
    assert len(idx) == 4000 and idx.min() >= 0 and idx.max() < len(y)
    labels = y[idx]
    changes = int(np.sum(labels[1:] != labels[:-1]))
    # consecutive scenes always change class, so scenes = changes + 1, of mean length ~ 8 (geometric: sd 7.5,
    # the mean of ~500 scenes is within 1 of 8 with overwhelming probability)
    assert abs(4000 / (changes + 1) - 8.0) < 1.0
    # within a scene frames are distinct examples while the class has enough of them
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    short = [(a, b) for a, b in zip(starts[:-1], starts[1:]) if b - a <= 40]
    assert len(short) > 400
    for a, b in short:
        assert len(set(idx[a:b].tolist())) == b - a


def test_temporal_patience_on_a_stream_spends_less_when_scenes_are_long():
    """Longer scenes -> more agreement with the last decision -> more early exits (same outputs)."""
    from tinyexit.policy.streams import scene_stream
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    early = np.where(rng.uniform(size=200) < 0.9, y, (y + 1) % 4)     # a 90 %-accurate early exit
    outs = [onehot(early, 4), onehot(y, 4)]
    rates = [TemporalPatience(2).evaluate_q([o[scene_stream(y, 3000, m, seed=2)] for o in outs],
                                            [SOFTMAX] * 2, MACS).exit_rate for m in (2.0, 20.0)]
    assert rates[0] < rates[1]
