"""The learned-confidence exit rule on hand-made int8 outputs: exit at early exit k when its confidence
model's int8 P(right) (output index 1) >= threshold_q; the exit head answers; exits tried in order."""
import numpy as np
import pytest

from tinyexit.policy.decisions import NEVER, LearnedConfidence, QParams

SOFTMAX = QParams(1 / 256, -128)     # what the int8 converter gives a softmax output


def test_threshold_q_is_the_smallest_code_reaching_the_threshold():
    codes = np.arange(-128, 128)
    for qp in (SOFTMAX, QParams(0.0071, -3), QParams(1 / 255, -128)):
        real = (codes - qp.zero_point) * qp.scale
        for t in [-0.1, 0.0, 1e-9, 0.25, 0.5, 0.7, 0.9921875, 0.99609375, 0.9999, 1.0, 1.5]:
            passing = codes[real >= t]
            want = int(passing.min()) if len(passing) else NEVER
            assert LearnedConfidence(t).threshold_q(qp) == want, (qp, t)
        for c in codes:   # the threshold at a code's own value is that code: the boundary itself exits
            assert LearnedConfidence(float((c - qp.zero_point) * qp.scale)).threshold_q(qp) == c
    assert LearnedConfidence(float("inf")).threshold_q(SOFTMAX) == NEVER
    np.testing.assert_array_equal(LearnedConfidence.grid(SOFTMAX), SOFTMAX.dequantize(np.arange(127, -129, -1)))


def test_boundary_and_order_on_hand_made_outputs():
    # 6 inputs, 3 classes; two early exits and the final exit
    e0 = np.array([[10, 10, -5], [0, 1, 2], [5, 0, 0], [1, 2, 3], [0, 0, 9], [7, 7, 7]], np.int8)
    e1 = np.array([[0, 3, 1], [4, 0, 0], [0, 0, 1], [2, 2, 0], [1, 0, 0], [0, 9, 0]], np.int8)
    fin = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]], np.int8)
    # confidence outputs [P(wrong), P(right)]: index 0 is ignored (set to look "confident" to catch misuse)
    c0 = np.array([[127, 40], [127, 39], [-128, 41], [127, -128], [127, 127], [127, 39]], np.int8)
    c1 = np.array([[127, 0], [127, 20], [127, 19], [127, 21], [127, -128], [127, 127]], np.int8)
    res = LearnedConfidence.decide_q([e0, e1, fin], [c0, c1], [40, 20], [10, 20, 30])
    # input 0: c0 = 40 == threshold -> exit 0 (answer: first of the tied maxima, class 0)
    # input 1: 39 < 40, c1 = 20 == 20 -> exit 1 (class 0); input 2: 41 -> exit 0 (class 0)
    # input 3: -128, 21 -> exit 1 (tie 2,2 -> class 0); input 4: 127 -> exit 0 (class 2)
    # input 5: 39, 127 -> exit 1 (class 1)
    np.testing.assert_array_equal(res.exit_index, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(res.decision, [0, 0, 0, 0, 2, 1])
    np.testing.assert_array_equal(res.macs, [10, 20, 10, 20, 10, 20])
    # one code higher at each exit: the boundary inputs move on; 128 never exits; -128 always exits
    res = LearnedConfidence.decide_q([e0, e1, fin], [c0, c1], [41, 21], [10, 20, 30])
    np.testing.assert_array_equal(res.exit_index, [2, 2, 0, 1, 0, 1])
    np.testing.assert_array_equal(res.decision, [2, 1, 0, 0, 2, 1])
    res = LearnedConfidence.decide_q([e0, e1, fin], [c0, c1], [NEVER, NEVER], [10, 20, 30])
    assert res.exit_rate == 0 and list(res.decision) == [2, 1, 0, 2, 1, 0]
    res = LearnedConfidence.decide_q([e0, e1, fin], [c0, c1], [-128, NEVER], [10, 20, 30])
    assert list(res.exit_index) == [0] * 6
    # evaluate_q derives the integer thresholds from the float one
    t = (40 - SOFTMAX.zero_point) * SOFTMAX.scale
    r2 = LearnedConfidence(t).evaluate_q([e0, e1, fin], [c0, c1], [SOFTMAX, SOFTMAX], [10, 20, 30])
    np.testing.assert_array_equal(r2.exit_index, [0, 2, 0, 2, 0, 1])
    with pytest.raises(ValueError):
        LearnedConfidence.decide_q([e0, fin], [c0, c1], [1, 1], [1, 2])
