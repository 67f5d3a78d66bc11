"""What a power-failure campaign of the shared exit branch checks of each inference (docs/DESIGN.md 3 and 6): the
branch pipeline's layout in work units (Layout), the report's extra figures (BranchCampaignReport) and the judge
of every inference (PointJudge): the committed answer is the branch output after the first exit point at or
after the durable low-energy signal, byte for byte, as intermittent/branch.py's docstring details."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.campaign import (BootResult)
from tinyexit.intermittent.report import CampaignReport
from tinyexit.pipeline import BRANCH, POOL


@dataclass(frozen=True)
class Layout:
    """Where positions (stage, step, unit) lie in an inference, in work units from its start: the stages in
    order, seg0, pool0, seg1, ..., pool(N-1); then the branch once. In confidence mode (a policy) the branch
    runs after every pool: seg0, pool0, branch, seg1, pool1, branch, ..."""
    units: tuple[tuple[int, ...], ...]      # per stage, per step
    roles: tuple[int, ...]
    confidence: bool = False

    @classmethod
    def from_rows(cls, rows: Sequence[dict], confidence: bool = False) -> "Layout":
        lay = cls(tuple(tuple(r["units"]) for r in rows), tuple(r["role"] for r in rows), confidence)
        if not lay.roles or lay.roles[-1] != BRANCH:
            raise TinyexitError("not a shared-branch pipeline (its last stage is not the branch)")
        return lay

    def with_confidence(self, on: bool) -> "Layout":
        return Layout(self.units, self.roles, on)

    @property
    def num_points(self) -> int:
        return sum(1 for r in self.roles if r == POOL)

    @property
    def branch_units(self) -> int:
        return sum(self.units[-1])

    def _start(self, stage: int) -> int:
        """Units before stage `stage` (< the branch) starts."""
        probes = stage // 2 if self.confidence else 0      # branch runs after each earlier pool
        return sum(sum(u) for u in self.units[:stage]) + probes * self.branch_units

    def position(self, stage: int, step: int, unit: int, point: int = 0) -> int:
        """Position of a checkpoint; in the branch stage `point` is the point it is answering (TX_H_EXIT)."""
        if stage == len(self.roles) - 1:
            base = self.point_end(point) - (self.branch_units if self.confidence else 0)
        else:
            base = self._start(stage)
        return base + sum(self.units[stage][:step]) + unit

    def point_end(self, k: int) -> int:
        """Units run when exit point k is reached: its pool done (and, in confidence mode, its branch run)."""
        s = 2 * k + 1
        return self._start(s) + sum(self.units[s]) + (self.branch_units if self.confidence else 0)

    def units_to_answer(self, k: int) -> int:
        """Units of an uninterrupted inference that answers at point k."""
        return self.point_end(k) + (0 if self.confidence else self.branch_units)

    def first_point_at_or_after(self, position: int) -> int:
        for k in range(self.num_points):
            if self.point_end(k) >= position:
                return k
        return self.num_points - 1

    def where(self, position: int) -> str:
        """'seg k', 'pool k' or 'branch k': where the unit at `position` (1-based) runs."""
        for k in range(self.num_points):
            for s, name in ((2 * k, "seg"), (2 * k + 1, "pool")):
                if position <= self._start(s) + sum(self.units[s]):
                    return f"{name} {k}"
            if position <= self.point_end(k):
                return f"branch {k}"
        return "branch"


# ------------------------------------------------------------------------------------------------ campaign

@dataclass
class BranchCampaignReport(CampaignReport):
    points: int = 0
    wrong_points: int = 0                       # answered at another point than the first at/after the signal
    lost_signals: int = 0                       # a low-energy signal the runtime saw was not made durable
    signalled: int = 0                          # inferences whose low-energy signal became durable
    answered: dict = field(default_factory=dict)       # "signal during seg k / pool k" -> {point: count}
    reexecuted_instructions: int = 0            # emulated only
    instructions_per_inference: float = 0.0     # emulated, continuous power, to the last point (this granularity)
    instructions_per_inference_baseline: float = 0.0   # the same with granularity 'none' (result record only)
    board: str = ""
    low_marks: int = 0                          # LOW_MARK words written (host)
    threshold: int | None = None                # confidence mode: the max-score threshold
    signals: list = field(default_factory=list)        # [(signal position in units, answering point)]
    point_ends: list = field(default_factory=list)     # units at which each exit point is reached

    def as_dict(self) -> dict:
        d = super().as_dict()
        d["checkpoint_overhead_instructions"] = self.instructions_per_inference - self.instructions_per_inference_baseline
        d["mean_reexecuted_instructions_per_cut"] = self.reexecuted_instructions / self.cuts if self.cuts else 0.0
        return d

    def table(self) -> str:
        lines = [ln for ln in super().table().splitlines() if not ln.startswith(("FAIL", "...", "re-executed",
                                                                                   "low energy signalled"))]
        head = ("shared exit branch, " + (f"board {self.board} (emulated, cuts after exact instruction counts), "
                                          if self.board else "host, ") + f"{self.points} exit points"
                + (f", confidence mode (branch after every point, answer when its max score >= {self.threshold})"
                   if self.threshold is not None else ""))
        lines = [head] + lines
        lines.insert(3, f"answered at the wrong point {self.wrong_points}, low-energy signals lost "
                        f"{self.lost_signals}; low energy durable in {self.signalled} "
                        f"of {self.inferences} inferences (probability {self.low_energy:.2f} per boot)")
        if self.board:
            base = self.instructions_per_inference_baseline
            over = self.instructions_per_inference - base
            to = "to the first confident point" if self.threshold is not None else "to the last point"
            lines.append(f"instructions per inference (continuous power, {to}): "
                         f"{self.instructions_per_inference:,.0f}, without checkpoints {base:,.0f}: overhead "
                         f"{over:,.0f} ({100.0 * over / base if base else 0:.2f} %)")
            lines.append(f"re-executed work: {self.reexecuted_instructions / self.cuts if self.cuts else 0:,.0f} "
                         f"instructions per cut")
        else:
            lines.append(f"re-executed work: {self.mean_reexecuted_units_per_cut:.2f} units per cut (an inference "
                         f"to the last point is {self.units_per_inference:.0f} units)")
        if self.answered:
            lines.append("answering point by where the low-energy signal arrived:")
            for where in sorted(self.answered, key=_where_key):
                row = self.answered[where]
                lines.append(f"  signal during {where:8s} -> " + ", ".join(f"point {p}: {n}" for p, n in sorted(row.items())))
        for f in self.failures[:10]:
            lines.append("FAIL " + f.replay_hint())
        if len(self.failures) > 10:
            lines.append(f"... and {len(self.failures) - 10} more failures")
        return "\n".join(lines)


class Threshold(int):
    """The shared branch's confidence-mode threshold (answer at the first point whose largest int8 score reaches
    it) with, optionally, low energy's own: `low`, the score a point needs once low energy is latched
    (tx_pipeline_t.low_policy); without it low energy answers at the next point whatever the scores. An int, so
    the drivers pass it as before; str() is what the host driver takes ("T" or "T:LOW")."""
    low: int | None

    def __new__(cls, value: int, low: int | None = None) -> "Threshold":
        obj = super().__new__(cls, value)
        obj.low = None if low is None else int(low)
        for v in (int(obj), obj.low):
            if v is not None and not -128 <= v <= 128:
                raise TinyexitError(f"threshold {v}: an int8 score, -128..127 (128: never)")
        return obj

    @classmethod
    def parse(cls, text: str) -> "Threshold":
        head, _, low = str(text).partition(":")
        try:
            return cls(int(head), int(low) if low else None)
        except ValueError:
            raise TinyexitError(f"threshold {text!r}: an int8 score (-128..127; 128: never), or T:LOW with low "
                                f"energy's own (e.g. 99:60)") from None

    def __str__(self) -> str:
        return f"{int(self)}" if self.low is None else f"{int(self)}:{self.low}"

    __repr__ = __str__

    def __eq__(self, other) -> bool:
        if not isinstance(other, int):
            return NotImplemented
        return int(self) == int(other) and self.low == getattr(other, "low", None)

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:   # equal to a plain int's when there is no low threshold (they compare equal)
        return hash(int(self)) if self.low is None else hash((int(self), self.low))


def low_threshold(threshold: int | None) -> int | None:
    """Low energy's own threshold of a confidence-mode threshold (Threshold.low), None for a plain one."""
    return getattr(threshold, "low", None)


def confident_point(outputs: Sequence[bytes], threshold: int | None) -> int | None:
    """The first point whose branch scores (int8) reach `threshold` (the drivers' max-score policy)."""
    if threshold is None:
        return None
    for k, out in enumerate(outputs):
        if max(b - 256 if b > 127 else b for b in out) >= threshold:
            return k
    return None


def continuous_point(outputs: Sequence[bytes], threshold: int | None) -> int:
    """Where an uninterrupted inference on continuous power answers: the first confident point in confidence mode,
    else (or when none is) the last point."""
    k = confident_point(outputs, threshold)
    return len(outputs) - 1 if k is None else k


def _where_key(w: str):
    kind, _, k = w.partition(" ")
    return (int(k) if k.isdigit() else 99, kind != "seg")


class _Judge:
    """Follows one inference boot by boot through the NVM images and says what its result must be."""

    def __init__(self, layout: Layout, fingerprint: int | None, input_id: int, confident: int | None = None,
                 low_ok: Sequence[bool] | None = None):
        """confident: the first point whose branch scores pass the policy (confidence mode), else None; low_ok:
        per point, whether its scores pass low energy's own rule (None: low energy answers at any point)."""
        self.layout, self.fingerprint, self.input_id, self.confident = layout, fingerprint, input_id, confident
        self.low_ok = low_ok
        self.signal: int | None = None        # position of the durable low-energy signal
        self.error: str | None = None
        self.lost: str | None = None

    def _mine(self, rec) -> bool:
        return rec is not None and rec.input_id == self.input_id and \
            (self.fingerprint is None or rec.fingerprint == self.fingerprint)

    def before_boot(self, rec) -> None:
        self._start = rec if self._mine(rec) else None

    def after_boot(self, rec, low_units: int | None, observed: bool = False) -> None:
        """`low_units`: this boot's signal (work units into the boot) when it may have been seen; `observed`:
        the runtime certainly polled the signal and ran no further work (the latch must then be durable)."""
        start = self._start
        if start is not None and (start.done or self.layout.roles[start.stage] == BRANCH and not self.layout.confidence):
            return                                       # the answering point was decided before this boot
        latched_before = start is not None and start.low_energy
        if observed and not latched_before and self.signal is None and not (self._mine(rec) and rec.low_energy):
            self.lost = (f"the boot saw low energy after {low_units} units and went on working, but no checkpoint "
                         "holds the latch: a cut loses the signal")
        if self.signal is None and not latched_before and self._mine(rec) and rec.low_energy:
            if low_units is None:
                self.error = "the low-energy latch appeared in a boot without a low-energy signal"
                return
            begin = 0 if start is None else self.layout.position(*start.position, start.exit_index)
            self.signal = begin + low_units

    def expected_point(self) -> int:
        last = self.layout.num_points - 1
        by_energy = last
        if self.signal is not None:   # the first point at/after the signal that low energy's rule lets answer
            first = self.layout.first_point_at_or_after(self.signal)
            by_energy = next((k for k in range(first, last) if self.low_ok is None or self.low_ok[k]), last)
        return min(by_energy, last if self.confident is None else self.confident)


def _finish_inference(report: BranchCampaignReport, judge: _Judge, rec, reported, expected_outputs: list[bytes],
                      fail) -> int | None:
    """Checks the committed result (failures through fail(kind, detail)); returns the answering point (or None
    when nothing was committed)."""
    lay = judge.layout
    want_point = judge.expected_point()
    committed = (rec.exit_index, rec.payload) if rec is not None and rec.done and rec.input_id == judge.input_id \
        else None
    if judge.error:
        fail("wrong-point", judge.error)
    if judge.lost:
        report.lost_signals += 1
        fail("lost-signal", judge.lost)
    if committed is None:
        report.wrong_results += 1
        fail("wrong-result", "nothing committed")
        return None
    point, payload = committed
    if point >= lay.num_points or payload != expected_outputs[point] or reported != committed:
        report.wrong_results += 1
        want = expected_outputs[point].hex() if point < lay.num_points else "(no such point)"
        fail("wrong-result", f"committed point {point} {payload.hex()}, reported "
                             f"{reported[0] if reported else None}, the branch after point {point} gives {want}")
    if point != want_point:
        report.wrong_points += 1
        fail("wrong-point", f"answered at point {point}, expected {want_point} (signal at "
                            f"unit {judge.signal}, first confident point {judge.confident})")
    report.exits[point] = report.exits.get(point, 0) + 1
    if judge.signal is not None:
        report.signals.append((judge.signal, point))
    if judge.signal is not None and (judge.confident is None or judge.confident >= point):
        report.signalled += 1
        row = report.answered.setdefault(lay.where(judge.signal), {})
        row[point] = row.get(point, 0) + 1
    return point


class PointJudge:
    """The shared branch's checks (a _Judge per inference, then _finish_inference): the result is the int8
    chain's branch output after the point it reports, and that point is the first at/after the durable
    low-energy signal (or the first confident one). `rework(input_index, point, spent)` counts re-executed work."""

    def __init__(self, report: BranchCampaignReport, layout: Layout, fingerprint: int | None,
                 expected: Sequence[list[bytes]], *, low_energy: float, threshold: int | None,
                 rework: Callable[[int, int, int], None]):
        self.report, self.layout, self.fingerprint, self.expected = report, layout, fingerprint, expected
        self.low_energy, self.threshold, self.rework = low_energy, threshold, rework

    def start(self, input_index: int, input_id: int) -> None:
        self.j = input_index
        outs, low = self.expected[input_index], low_threshold(self.threshold)
        self.judge = _Judge(self.layout, self.fingerprint, input_id, confident_point(outs, self.threshold),
                            None if low is None else [confident_point([o], low) == 0 for o in outs])

    def draw_low(self, rng: random.Random) -> int | None:
        if rng.random() < self.low_energy:
            return rng.randint(1, self.layout.point_end(self.layout.num_points - 1))
        return None

    def before_boot(self, rec) -> None:
        self.judge.before_boot(rec)

    def after_boot(self, boot: BootResult, rec, fail) -> None:
        self.report.low_marks += boot.low_marks
        self.judge.after_boot(rec, boot.low_seen, boot.low_observed)

    def abandon(self) -> None:
        pass

    def finish(self, b: BootResult, rec, spent: int, fail) -> None:
        point = _finish_inference(self.report, self.judge, rec, (b.exit_index, b.output), self.expected[self.j], fail)
        if point is not None:
            self.rework(self.j, point, spent)
