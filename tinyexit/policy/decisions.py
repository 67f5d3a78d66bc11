"""Exit policies: for every input, (decision, exit taken, MACs spent).

Policies read the int8 softmax outputs exactly as the firmware does, with integer arithmetic only, so that
Python and the generated C decide bit for bit alike; each threshold therefore also has an integer form
(`threshold_q(qp)`), computed once here and baked into the firmware. Float twins (`evaluate`) serve the
float Keras model.

Static policies (one input at a time; exits tried in order, the first one whose statistic passes wins,
otherwise the final exit decides):
    MaxSoftmax(t)   exit when max_c p_c >= t.         int8: max_c q_c >= threshold_q
    Margin(t)       exit when p_(1) - p_(2) >= t.     int8: q_(1) - q_(2) >= threshold_q
    Entropy(t)      exit when H(p) <= t (nats).       int8: sum_c T[q_c + 128] <= threshold_q, with the
                    table T = entropy_table(qp) (-p ln p in units of 2^-ENTROPY_FRAC_BITS nats)
Stream policies (Sponner et al., temporal decision mechanisms; they use the first early exit only):
    DifferenceDetection(t)  new scene when the Euclidean distance between the exit's output and the
                    reference output (the output that opened the current scene, or the previous input's
                    with reference="previous") exceeds t: run the full model and decide with the final
                    exit; otherwise stop at the exit and keep the last decision.
                    int8: sum_c (q_c - r_c)^2 <= threshold_q keeps the decision.
    TemporalPatience(k)     stop at the exit when its prediction has agreed with the last decision on k
                    consecutive inputs (this one included); otherwise run the full model, whose prediction
                    becomes the last decision.
    Composition with max-softmax (`max_softmax=t` on either): stopping at the first exit also needs
                    max_c p_c >= t there (AND; int8: max_c q_c >= MaxSoftmax(t).threshold_q, `gate_q`). A
                    failed gate runs the full model exactly as a failed temporal test does, and the state
                    (reference, last decision, agreement count) is updated the same way; None: no gate.
                    `temporal_decide_q` is the integer rule the firmware runs (tx_temporal.h), input by input.
MACs: `exit_macs[k]` is what an inference costs when it ends at exit k (segments and heads evaluated up to
there; the quant manifest's `macs_to_exit`). Predictions are argmax with ties to the lowest class index.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from tinyexit.quantize.qparams import QParams  # noqa: F401  (the policies read int8 outputs with it)

ENTROPY_FRAC_BITS = 16
NEVER = 128  # an int8 code threshold that no int8 value reaches: never exit (max-softmax)


@dataclasses.dataclass(frozen=True)
class PolicyResult:
    decision: np.ndarray    # int64 [N]: predicted class
    exit_index: np.ndarray  # int64 [N]: exit taken (num_exits - 1 = final)
    macs: np.ndarray        # int64 [N]: MACs spent on the input
    num_exits: int

    @property
    def exit_rate(self) -> float:
        """Fraction of inputs that ended before the final exit."""
        return float(np.mean(self.exit_index < self.num_exits - 1)) if len(self.exit_index) else 0.0

    @property
    def mean_macs(self) -> float:
        return float(np.mean(self.macs)) if len(self.macs) else 0.0

    def accuracy(self, y) -> float:
        return float(np.mean(self.decision == np.asarray(y)))


def argmax_first(a: np.ndarray) -> np.ndarray:
    """argmax over the last axis, ties to the lowest index (what the firmware's `>` scan gives)."""
    return np.argmax(a, axis=-1).astype(np.int64)


def _smallest_code(t: float, scale: float, offset: int) -> int:
    """Smallest integer c with (c - offset) * scale >= t (exactly, in float64)."""
    c = math.ceil(t / scale) + offset
    while (c - 1 - offset) * scale >= t:
        c -= 1
    while (c - offset) * scale < t:
        c += 1
    return c


def entropy_table(qp: QParams) -> np.ndarray:
    """T[q + 128] = round(-p ln p * 2^ENTROPY_FRAC_BITS), p = clip(dequantized q, 0, 1); T = 0 where p = 0."""
    qp = QParams.of(qp)
    p = np.clip(qp.dequantize(np.arange(-128, 128)), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.floor(h * (1 << ENTROPY_FRAC_BITS) + 0.5).astype(np.int64)


def _stack(outputs) -> list[np.ndarray]:
    return [np.asarray(o).reshape(len(o), -1) for o in outputs]


class _Static:
    """Common evaluation of the one-input-at-a-time policies."""

    exits_when = ">="  # or "<="
    kind = ""

    # statistic_q / statistic / threshold_q / grid are defined by subclasses

    def exit_mask_q(self, q: np.ndarray, qp) -> np.ndarray:
        return self._cmp(self.statistic_q(q, qp), self.threshold_q(qp))

    def exit_mask(self, p: np.ndarray) -> np.ndarray:
        return self._cmp(self.statistic(p), self.threshold)

    def _cmp(self, stat, thr):
        stat = np.asarray(stat)
        return stat >= thr if self.exits_when == ">=" else stat <= thr

    def with_threshold(self, threshold: float):
        return dataclasses.replace(self, threshold=float(threshold))

    def _combine(self, masks, preds, exit_macs) -> PolicyResult:
        n = len(preds[-1])
        k_final = len(preds) - 1
        exit_index = np.full(n, k_final, np.int64)
        for k in range(k_final - 1, -1, -1):  # the earliest passing exit wins
            exit_index[masks[k]] = k
        decision = np.choose(exit_index, preds) if n else np.zeros(0, np.int64)
        macs = np.asarray(exit_macs, np.int64)[exit_index]
        return PolicyResult(decision.astype(np.int64), exit_index, macs, len(preds))

    def evaluate_q(self, outputs_q: Sequence[np.ndarray], qparams: Sequence, exit_macs: Sequence[int]) -> PolicyResult:
        """int8 outputs of every exit ([N, C] each, final last) -> what the firmware decides."""
        outs = _stack(outputs_q)
        masks = [self.exit_mask_q(o, qp) for o, qp in zip(outs[:-1], qparams[:-1])]
        return self._combine(masks, [argmax_first(o) for o in outs], exit_macs)

    def evaluate(self, outputs: Sequence[np.ndarray], exit_macs: Sequence[int]) -> PolicyResult:
        """float softmax outputs of every exit -> decisions of the float model with the float threshold."""
        outs = _stack(outputs)
        masks = [self.exit_mask(o) for o in outs[:-1]]
        return self._combine(masks, [argmax_first(o) for o in outs], exit_macs)

    def to_json(self, qparams: Sequence) -> dict:
        return {"policy": self.kind, "threshold": self.threshold,
                "threshold_q": [int(self.threshold_q(qp)) for qp in qparams]}


@dataclasses.dataclass(frozen=True)
class MaxSoftmax(_Static):
    threshold: float
    kind = "max_softmax"
    exits_when = ">="

    def statistic_q(self, q, qp=None):
        return np.asarray(q).reshape(len(q), -1).astype(np.int64).max(axis=1)

    def statistic(self, p):
        return np.asarray(p, np.float64).reshape(len(p), -1).max(axis=1)

    def threshold_q(self, qp) -> int:
        qp = QParams.of(qp)
        return int(np.clip(_smallest_code(self.threshold, qp.scale, qp.zero_point), -128, NEVER))

    @staticmethod
    def grid(qp) -> np.ndarray:
        """Every distinct int8 decision, most conservative first: thresholds at codes 127 .. -128."""
        qp = QParams.of(qp)
        return qp.dequantize(np.arange(127, -129, -1))


@dataclasses.dataclass(frozen=True)
class Margin(_Static):
    threshold: float
    kind = "margin"
    exits_when = ">="

    @staticmethod
    def _top2(a):
        s = np.sort(a.reshape(len(a), -1), axis=1)
        return s[:, -1] - s[:, -2]

    def statistic_q(self, q, qp=None):
        return self._top2(np.asarray(q).astype(np.int64))

    def statistic(self, p):
        return self._top2(np.asarray(p, np.float64))

    def threshold_q(self, qp) -> int:
        qp = QParams.of(qp)
        return int(np.clip(_smallest_code(self.threshold, qp.scale, 0), 0, 256))

    @staticmethod
    def grid(qp) -> np.ndarray:
        qp = QParams.of(qp)
        return np.arange(255, -1, -1) * float(qp.scale)


@dataclasses.dataclass(frozen=True)
class Entropy(_Static):
    threshold: float  # nats
    kind = "entropy"
    exits_when = "<="

    def statistic_q(self, q, qp):
        table = entropy_table(QParams.of(qp))
        return table[np.asarray(q).reshape(len(q), -1).astype(np.int64) + 128].sum(axis=1)

    def statistic(self, p):
        p = np.clip(np.asarray(p, np.float64).reshape(len(p), -1), 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)

    def threshold_q(self, qp=None) -> int:
        if self.threshold < 0:
            return -1  # never exit: entropy codes are >= 0
        return int(math.floor(self.threshold * (1 << ENTROPY_FRAC_BITS)))

    @staticmethod
    def grid(qp, num_classes: int = 12, steps: int = 256) -> np.ndarray:
        """Entropy thresholds from 0 (most conservative) to ln(num_classes)."""
        return np.linspace(0.0, math.log(num_classes), steps)


# ---------------------------------------------------------------------------------------------------------
# Stream policies
# ---------------------------------------------------------------------------------------------------------

def gate_q(max_softmax: float | None, qp) -> int:
    """Integer form of the max-softmax gate of a temporal policy: -128 (every int8 code passes) when None."""
    return -128 if max_softmax is None else MaxSoftmax(max_softmax).threshold_q(qp)


def temporal_decide_q(kind: str, first_q: np.ndarray, final_pred: np.ndarray, param_q: int, gate: int,
                      exit_macs: Sequence[int], reference: str = "scene") -> PolicyResult:
    """The firmware's temporal rule (tx_temporal.h), input after input, in integers only.
    kind "difference": param_q = the largest squared distance sum_c (q_c - r_c)^2 that keeps the decision;
    kind "patience": param_q = the patience k. gate: max-softmax code the first exit's max q must also reach
    to stop there (-128: no gate). first_q: int8 [N, C] of the first early exit; final_pred [N]."""
    first = np.asarray(first_q).reshape(len(first_q), -1).astype(np.int64)
    n, k_final = len(first), len(exit_macs) - 1
    decision = np.zeros(n, np.int64)
    exit_index = np.zeros(n, np.int64)
    early_pred = argmax_first(first)
    last, streak, ref = None, 0, None
    for t in range(n):
        gate_ok = int(first[t].max()) >= gate if len(first[t]) else False
        if kind == "difference":
            stop = ref is not None and int(((first[t] - ref) ** 2).sum()) <= param_q and gate_ok
            if stop:
                decision[t] = last
                if reference == "previous":
                    ref = first[t]
                continue
            decision[t] = last = int(final_pred[t])
            exit_index[t] = k_final
            ref = first[t]
        elif kind == "patience":
            e = int(early_pred[t])
            streak = streak + 1 if (last is not None and e == last) else 0
            if streak >= param_q and gate_ok:
                decision[t] = last
                continue
            f = int(final_pred[t])
            decision[t], exit_index[t] = f, k_final
            if f != last:
                last = f
                streak = 1 if e == f else 0
        else:
            raise ValueError(f"unknown temporal rule {kind!r}")
    return PolicyResult(decision, exit_index, np.asarray(exit_macs, np.int64)[exit_index], k_final + 1)


@dataclasses.dataclass(frozen=True)
class DifferenceDetection:
    """Keep the last decision while the first exit's output stays within `threshold` (Euclidean distance
    between probability vectors) of the reference output (and, with `max_softmax`, its max reaches it)."""
    threshold: float
    reference: str = "scene"  # "scene": output that opened the scene (Sponner et al.); "previous": last input
    max_softmax: float | None = None  # composition: AND a max-softmax gate at the first exit
    kind = "difference_detection"
    rule = "difference"       # the firmware's name (policy.json "policy")

    def __post_init__(self):
        if self.reference not in ("scene", "previous"):
            raise ValueError("reference must be 'scene' or 'previous'")

    def threshold_q(self, qp) -> int:
        """Largest integer d2 with sqrt(d2) * scale <= threshold: keep the decision iff sum (q - r)^2 <= it."""
        qp = QParams.of(qp)
        if self.threshold < 0:
            return -1
        d2 = math.floor((self.threshold / qp.scale) ** 2)
        while math.sqrt(d2 + 1) * qp.scale <= self.threshold:
            d2 += 1
        while d2 >= 0 and math.sqrt(d2) * qp.scale > self.threshold:
            d2 -= 1
        return d2

    def evaluate_q(self, outputs_q, qparams, exit_macs) -> PolicyResult:
        outs = _stack(outputs_q)
        return temporal_decide_q("difference", outs[0], argmax_first(outs[-1]), self.threshold_q(qparams[0]),
                                 gate_q(self.max_softmax, qparams[0]), exit_macs, self.reference)

    def evaluate(self, outputs, exit_macs) -> PolicyResult:
        outs = _stack(outputs)
        first = outs[0].astype(np.float64)
        final_pred = argmax_first(outs[-1])
        gate = -math.inf if self.max_softmax is None else self.max_softmax
        n, k_final = len(first), len(exit_macs) - 1
        decision, exit_index = np.zeros(n, np.int64), np.zeros(n, np.int64)
        last, ref = None, None
        for t in range(n):
            if (ref is not None and float(np.sqrt(((first[t] - ref) ** 2).sum())) <= self.threshold
                    and float(first[t].max()) >= gate):
                decision[t] = last
                if self.reference == "previous":
                    ref = first[t]
                continue
            decision[t] = last = final_pred[t]
            exit_index[t] = k_final
            ref = first[t]
        return PolicyResult(decision, exit_index, np.asarray(exit_macs, np.int64)[exit_index], k_final + 1)

    def to_json(self, qparams) -> dict:
        return {"policy": self.kind, "threshold": self.threshold, "reference": self.reference,
                "threshold_q": [int(self.threshold_q(qparams[0]))], "max_softmax": self.max_softmax}


@dataclasses.dataclass(frozen=True)
class TemporalPatience:
    """Stop at the first exit when its prediction has matched the last decision on `patience` consecutive
    inputs (the current one included) and, with `max_softmax`, its max reaches it; otherwise run the full
    model."""
    patience: int
    max_softmax: float | None = None  # composition: AND a max-softmax gate at the first exit
    kind = "temporal_patience"
    rule = "patience"         # the firmware's name (policy.json "policy")

    def __post_init__(self):
        if self.patience < 1:
            raise ValueError("patience must be >= 1")

    def evaluate_q(self, outputs_q, qparams, exit_macs) -> PolicyResult:
        outs = _stack(outputs_q)
        g = -128 if self.max_softmax is None else gate_q(self.max_softmax, qparams[0])
        return temporal_decide_q("patience", outs[0], argmax_first(outs[-1]), self.patience, g, exit_macs)

    def evaluate(self, outputs, exit_macs) -> PolicyResult:
        if self.max_softmax is not None:
            raise ValueError("the float form of a gated patience policy is not defined; use evaluate_q")
        return self.evaluate_q(outputs, None, exit_macs)

    def to_json(self, qparams=None) -> dict:
        return {"policy": self.kind, "patience": self.patience, "max_softmax": self.max_softmax}


TEMPORAL_POLICIES = {"difference": DifferenceDetection, "patience": TemporalPatience}


STATIC_POLICIES = {"max_softmax": MaxSoftmax, "margin": Margin, "entropy": Entropy}


# ---------------------------------------------------------------------------------------------------------
# Learned confidence (tinyexit.research.confidence): a separate int8 model per early exit predicts P(exit is right)
# ---------------------------------------------------------------------------------------------------------

CONFIDENCE_INDEX = 1  # the confidence model's output is [P(wrong), P(right)]


@dataclasses.dataclass(frozen=True)
class LearnedConfidence:
    """Exit at early exit k when its confidence model's P(right) >= threshold. int8: the firmware runs the
    confidence model on the exit point's int8 map and exits when c[CONFIDENCE_INDEX] >= threshold_q (128 =
    never); the answer is still the exit head's argmax (ties to the lowest class). Exits are tried in order."""
    threshold: float
    kind = "confidence"

    def threshold_q(self, qp) -> int:
        qp = QParams.of(qp)
        if not math.isfinite(self.threshold) or self.threshold > 1.0:
            return NEVER
        return int(np.clip(_smallest_code(self.threshold, qp.scale, qp.zero_point), -128, NEVER))

    @staticmethod
    def statistic_q(conf_q) -> np.ndarray:
        c = np.asarray(conf_q)
        return c.reshape(len(c), -1)[:, CONFIDENCE_INDEX].astype(np.int64)

    @staticmethod
    def grid(qp) -> np.ndarray:
        """Every distinct int8 decision, most conservative first: thresholds at codes 127 .. -128."""
        return QParams.of(qp).dequantize(np.arange(127, -129, -1))

    @staticmethod
    def decide_q(outputs_q: Sequence[np.ndarray], conf_q: Sequence[np.ndarray], thresholds_q: Sequence[int],
                 exit_macs: Sequence[int]) -> PolicyResult:
        """The firmware's rule with explicit integer thresholds (one per early exit)."""
        outs = _stack(outputs_q)
        if not (len(conf_q) == len(thresholds_q) == len(outs) - 1):
            raise ValueError("one confidence output and one threshold per early exit")
        masks = [LearnedConfidence.statistic_q(c) >= int(t) for c, t in zip(conf_q, thresholds_q)]
        return _Static._combine(None, masks, [argmax_first(o) for o in outs], exit_macs)

    def evaluate_q(self, outputs_q, conf_q, conf_qparams, exit_macs) -> PolicyResult:
        """int8 exit outputs ([N, C] each, final last) and int8 confidence outputs (one per early exit)."""
        return self.decide_q(outputs_q, conf_q, [self.threshold_q(qp) for qp in conf_qparams], exit_macs)
