"""The energy model: a board powered from a capacitor that a harvester charges (harvest.py).

The capacitor C holds E = C V^2 / 2. The supply turns the board on when V reaches V_on and cuts it at V_off;
the power-fail comparator raises the low-energy warning when V falls through V_warn. The board is a
**constant-power** load (its DC/DC regulator draws about the same power at any VDD; power = datasheet current x
the board's `supply` voltage): `run` while it executes, `erase`/`write` while the NVMC erases a page or writes a
word (the CPU waits, the instruction count stands still), `sleep` when idle, `off` while it recharges. The
capacitor is not charged above V_max (a surplus is shed and counted as wasted).

Exactness: harvester traces are piecewise-constant and each load is constant, so between breakpoints E changes
linearly and every crossing (V_warn, V_off, V_on, V_max) is solved in closed form -- no time step. Results are
exact up to float rounding; instruction counts are rounded down after a relative tolerance of 1e-12.

One boot is a **timeline** of events, in order:

    Work(instructions=n, cycles=None)   n instructions; cycles default to n x model.cycles_per_instruction
                                         (1 unless given: pass a cycle estimate when one exists)
    Flash("erase", count=pages)          NVM page erases (board: memory.nvm's erase_page_s each, at
                                         energy.nvm_erase_current)
    Flash("write", count=words)          NVM word writes (board: memory.nvm's write_word_s, or 4 x write_byte_s
                                         for an SPI FRAM, each at energy.nvm_write_current)
    Sleep(seconds)                       System ON idle at the sleep current
    Mark("commit") / Mark("result")      cost nothing; recorded with their instruction count, time and voltage

An emulated run reports, per boot, its NVM events as (instruction count, kind[, count]) tuples, e.g.
[(120_000, "erase", 1), (130_000, "write", 96), (130_000, "commit"), (4_500_000, "result")];
`timeline(events, total_instructions)` turns such a list into the events above (Work between the counts,
Flash for erase/write, Mark for any other kind). Then

    model = EnergyModel.from_board(load_board("nrf52840"), capacitor_f=470e-6)
    boot = model.run_boot(trace, timeline(events, total), t=0.0, v=model.on_v)
    boot.cut_at_instruction    # None if the boot completes; else the instructions retired before the cut
    boot.cut_during, boot.cut_op_done   # "write", 17: cut inside a write of 96 words after 17 of them
    boot.warn_at_instruction   # where the low-energy warning is raised (None if V stays above V_warn)
    off = model.recharge(trace, boot.t_end)   # off.t_on (None: the harvester never recharges), off.off_s

Just-in-time checkpoints change the timeline after the warning only: run the boot uncut, ask run_boot for the
warning, re-run the firmware with the warning raised at that instruction, and ask run_boot again with the new
events (the prefix before the warning is the same, so the warning stays where it was). `simulate` chains boots
and recharges into a campaign with a voltage-over-time series; energy_plot.plot_campaign draws its PNG.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence, Union

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.harvest import Trace

_TOL = 1e-12


@dataclasses.dataclass(frozen=True)
class Work:
    instructions: int
    cycles: int | None = None


@dataclasses.dataclass(frozen=True)
class Flash:
    kind: str          # "erase" (pages) | "write" (32-bit words)
    count: int = 1


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Mark:
    label: str         # "commit", "result", ...


Event = Union[Work, Flash, Sleep, Mark]


def timeline(events: Iterable, total_instructions: int) -> list[Event]:
    """Events [(instruction count, kind[, count]), ...] in order -> a timeline: Work up to each count, then
    Flash(kind, count) for "erase"/"write" or Mark(kind) for any other kind; Work up to `total_instructions`."""
    out: list[Event] = []
    done = 0
    for ev in events:
        if not isinstance(ev, (tuple, list)) or len(ev) not in (2, 3):
            raise TinyexitError(f"timeline event {ev!r}: expected (instruction count, kind[, count]).")
        at, kind = int(ev[0]), str(ev[1])
        count = int(ev[2]) if len(ev) == 3 else 1
        if at < done:
            raise TinyexitError(f"timeline event {ev!r}: instruction count {at} goes back (previous: {done}); "
                                f"give the events in order.")
        if at > done:
            out.append(Work(at - done))
            done = at
        out.append(Flash(kind, count) if kind in ("erase", "write") else Mark(kind))
    if total_instructions < done:
        raise TinyexitError(f"timeline: total_instructions {total_instructions} is below the last event's "
                            f"count {done}.")
    if total_instructions > done:
        out.append(Work(total_instructions - done))
    return out


@dataclasses.dataclass
class BootResult:
    """One boot run under a trace from (t_start, v_start)."""
    t_start: float
    v_start: float
    t_end: float               # the cut, or the end of the timeline
    v_end: float
    instructions: int          # retired in this boot (up to the cut)
    cut_at_instruction: int | None
    warn_at_instruction: int | None
    cut_t: float | None
    warn_t: float | None
    cut_event: int | None      # index in the timeline of the event the cut fell in
    cut_during: str | None     # "work" | "erase" | "write" | "sleep"
    cut_op_done: int | None    # whole pages erased / words written by the cut Flash event before the cut
    harvested_j: float         # what the trace offered over [t_start, t_end]
    consumed_j: float
    wasted_j: float            # offered while the capacitor was full
    marks: list[tuple[str, int, float, float]]   # (label, instruction count, t, v)
    points: list[tuple[float, float]]            # (t, v) at every breakpoint, for plots

    @property
    def cut(self) -> bool:
        return self.cut_at_instruction is not None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("points")
        return d


@dataclasses.dataclass
class Recharge:
    t_start: float
    v_start: float
    t_on: float | None         # None: the harvester never brings the capacitor to V_on (see reason)
    harvested_j: float
    consumed_j: float
    wasted_j: float
    reason: str | None
    points: list[tuple[float, float]]

    @property
    def off_s(self) -> float | None:
        return None if self.t_on is None else self.t_on - self.t_start


@dataclasses.dataclass
class _Step:
    t: float
    e: float
    harvested: float = 0.0
    consumed: float = 0.0
    wasted: float = 0.0
    warn_t: float | None = None
    stopped: str | None = None  # "floor" | "target" | "never" | None (duration elapsed)


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    capacitor_f: float
    on_v: float
    off_v: float
    warn_v: float | None       # None: no warning
    max_v: float
    clock_hz: float
    run_w: float
    sleep_w: float
    off_w: float
    erase_w: float
    erase_s: float
    write_w: float
    write_s: float
    cycles_per_instruction: float = 1.0
    max_off_s: float = 30 * 86400.0   # a recharge longer than this counts as never

    def __post_init__(self):
        warn = self.warn_v if self.warn_v is not None else self.on_v
        if not (self.capacitor_f > 0 and 0 <= self.off_v <= warn <= self.on_v <= self.max_v):
            raise TinyexitError(f"energy model: need a capacitor > 0 and V_off <= V_warn <= V_on <= V_max (got "
                                f"C={self.capacitor_f} F, V_off={self.off_v}, V_warn={self.warn_v}, "
                                f"V_on={self.on_v}, V_max={self.max_v}).")

    @classmethod
    def from_board(cls, board, capacitor_f: float | None = None, warn_v: float | None = None,
                   cycles_per_instruction: float = 1.0, **overrides) -> "EnergyModel":
        """The model of a board file's `energy:` section (currents, voltages, capacitor) with the NVM's times from
        its memory.nvm (Board.flash_nvm: the board's own NVM, also for its emulated variant); `capacitor_f`/`warn_v`
        override the defaults. An NVM without erase (SPI FRAM) has erase_s = erase_w = 0."""
        e = board.energy
        if e is None:
            raise TinyexitError(f"board '{board.name}' has no energy: section in {board.path}; add one (see "
                                f"boards/nrf52840.yaml) or use a board that has it.")
        w, nvm = e.supply_v, board.flash_nvm
        erase_s = nvm.erase_page_s if nvm.erases else 0.0
        if erase_s is None or nvm.word_write_s is None:
            raise TinyexitError(f"board '{board.name}': memory.nvm gives no NVM times (erase_page_s and write_word_s, "
                                f"or write_byte_s) in {board.path}; add them.")
        return cls(capacitor_f=capacitor_f or e.capacitor_f, on_v=e.on_v, off_v=e.off_v,
                   warn_v=e.warn_v if warn_v is None else warn_v, max_v=e.max_v, clock_hz=board.clock_hz,
                   run_w=e.run_current_a * w, sleep_w=e.sleep_current_a * w, off_w=e.off_current_a * w,
                   erase_w=(e.erase_current_a or 0.0) * w, erase_s=erase_s, write_w=e.write_current_a * w,
                   write_s=nvm.word_write_s, cycles_per_instruction=cycles_per_instruction, **overrides)

    def energy(self, v: float) -> float:
        return 0.5 * self.capacitor_f * v * v

    def voltage(self, e: float) -> float:
        return math.sqrt(max(0.0, 2.0 * e / self.capacitor_f))

    @property
    def usable_j(self) -> float:
        """Energy between V_on and V_off: what one charge gives the board."""
        return self.energy(self.on_v) - self.energy(self.off_v)

    def reserve_j(self, warn_v: float | None = None) -> float:
        """Energy left between the warning level and V_off: the budget of a just-in-time checkpoint."""
        v = self.warn_v if warn_v is None else warn_v
        return self.energy(v) - self.energy(self.off_v)

    def warn_level_for(self, energy_j: float, levels: Sequence[float]) -> float | None:
        """The lowest of the comparator's `levels` (e.g. 1.7, 1.8, ... 2.8 V) above V_off whose reserve is at
        least `energy_j`, or None when even the highest below V_on is too low."""
        for v in sorted(levels):
            if self.off_v < v < self.on_v and self.reserve_j(v) >= energy_j:
                return v
        return None

    def cost(self, ev: Event) -> tuple[float, float]:
        """(seconds, watts) of one event."""
        if isinstance(ev, Work):
            cycles = ev.cycles if ev.cycles is not None else ev.instructions * self.cycles_per_instruction
            return cycles / self.clock_hz, self.run_w
        if isinstance(ev, Flash):
            if ev.kind == "erase":
                return ev.count * self.erase_s, self.erase_w
            if ev.kind == "write":
                return ev.count * self.write_s, self.write_w
            raise TinyexitError(f"Flash kind {ev.kind!r}: use 'erase' or 'write'.")
        if isinstance(ev, Sleep):
            return ev.seconds, self.sleep_w
        if isinstance(ev, Mark):
            return 0.0, 0.0
        raise TypeError(f"not a timeline event: {ev!r}")

    # -- the integrator ---------------------------------------------------------------------------------------
    def _advance(self, trace: Trace, t: float, e: float, load_w: float, duration: float, *,
                 floor_e: float | None = None, warn_e: float | None = None, target_e: float | None = None,
                 points: list | None = None) -> _Step:
        """Draw `load_w` for `duration` s from (t, e) under `trace`; stop early when E falls to `floor_e` or
        rises to `target_e`; note when E falls through `warn_e`. Exact over each constant piece."""
        s = _Step(t, e)
        end, e_max = t + duration, self.energy(self.max_v)
        while s.t < end:
            _, b, p = trace.segment_at(s.t)
            dt, r, stop, full = min(b, end) - s.t, p - load_w, None, False
            if math.isinf(b) and r <= 0 and target_e is not None and s.e < target_e:
                s.stopped = "never"          # the last piece of the trace lasts for ever and does not charge
                return s
            if r < 0:
                if warn_e is not None and s.warn_t is None and s.e > warn_e and (s.e - warn_e) / -r <= dt:
                    s.warn_t = s.t + (s.e - warn_e) / -r
                if floor_e is not None and (s.e - floor_e) / -r <= dt:
                    dt, stop = max(0.0, (s.e - floor_e) / -r), "floor"
                elif 0 < s.e and s.e + r * dt < 0:   # the capacitor empties (only without a floor); once
                    dt = s.e / -r                    # empty, the load gets only what the harvester gives
            elif r > 0:
                if target_e is not None and (target_e - s.e) / r <= dt:
                    dt, stop = max(0.0, (target_e - s.e) / r), "target"
                if s.e < e_max and (e_max - s.e) / r < dt:
                    dt, stop, full = (e_max - s.e) / r, None, True
            if math.isinf(dt):               # an endless constant piece that never reaches a stop
                s.stopped = "never"
                return s
            s.harvested += p * dt
            if r > 0 and s.e >= e_max:       # full: the surplus is shed
                s.wasted += r * dt
                s.consumed += load_w * dt
            else:
                drawn = min(load_w * dt, s.e + p * dt)
                s.consumed += drawn
                s.e = e_max if full else (floor_e if stop == "floor" else
                                          target_e if stop == "target" else max(0.0, s.e + p * dt - drawn))
            s.t += dt
            if points is not None:
                points.append((s.t, self.voltage(s.e)))
            if stop:
                s.stopped = stop
                return s
        return s

    def _instructions(self, ev: Work, elapsed: float, seconds: float) -> int:
        if seconds <= 0:
            return ev.instructions
        x = ev.instructions * elapsed / seconds
        return min(ev.instructions, int(math.floor(x * (1 + _TOL) + _TOL)))

    def run_boot(self, trace: Trace, events: Sequence[Event], t: float = 0.0, v: float | None = None) -> BootResult:
        """Run one boot's timeline from time t at capacitor voltage v (default V_on) until it ends or V falls to
        V_off (the cut)."""
        v = self.on_v if v is None else v
        e = self.energy(v)
        floor_e = self.energy(self.off_v)
        warn_e = None if self.warn_v is None else self.energy(self.warn_v)
        res = BootResult(t_start=t, v_start=v, t_end=t, v_end=v, instructions=0, cut_at_instruction=None,
                         warn_at_instruction=None, cut_t=None, warn_t=None, cut_event=None, cut_during=None,
                         cut_op_done=None, harvested_j=0.0, consumed_j=0.0, wasted_j=0.0, marks=[],
                         points=[(t, v)])
        if warn_e is not None and e <= warn_e:
            res.warn_at_instruction, res.warn_t = 0, t
        if e <= floor_e:
            res.cut_at_instruction, res.cut_t, res.cut_event, res.cut_during = 0, t, 0, "work"
            return res
        icount = 0
        for i, ev in enumerate(events):
            if isinstance(ev, Mark):
                res.marks.append((ev.label, icount, t, self.voltage(e)))
                continue
            seconds, watts = self.cost(ev)
            step = self._advance(trace, t, e, watts, seconds, floor_e=floor_e,
                                 warn_e=warn_e if res.warn_t is None else None, points=res.points)
            res.harvested_j += step.harvested
            res.consumed_j += step.consumed
            res.wasted_j += step.wasted
            if step.warn_t is not None and res.warn_t is None:
                res.warn_t = step.warn_t
                res.warn_at_instruction = icount + (self._instructions(ev, step.warn_t - t, seconds)
                                                    if isinstance(ev, Work) else 0)
            if step.stopped == "floor":
                res.cut_t, res.cut_event = step.t, i
                if isinstance(ev, Work):
                    icount += self._instructions(ev, step.t - t, seconds)
                    res.cut_during = "work"
                elif isinstance(ev, Flash):
                    res.cut_during = ev.kind
                    res.cut_op_done = min(ev.count, int(math.floor(ev.count * (step.t - t) / seconds * (1 + _TOL))))
                else:
                    res.cut_during = "sleep"
                res.cut_at_instruction = icount
                t, e = step.t, step.e
                break
            t, e = step.t, step.e
            if isinstance(ev, Work):
                icount += ev.instructions
        res.t_end, res.v_end, res.instructions = t, self.voltage(e), icount
        return res

    def recharge(self, trace: Trace, t: float, v: float | None = None) -> Recharge:
        """From a cut at time t (capacitor at v, default V_off), the board off: when does the harvester bring the
        capacitor to V_on? t_on None (with a reason) when it never does within max_off_s."""
        v = self.off_v if v is None else v
        rc = Recharge(t_start=t, v_start=v, t_on=None, harvested_j=0.0, consumed_j=0.0, wasted_j=0.0, reason=None,
                      points=[(t, v)])
        if trace.peak_w <= self.off_w:
            rc.reason = (f"the harvester's peak power {trace.peak_w:.3g} W never exceeds the board's off-state "
                         f"draw {self.off_w:.3g} W")
            return rc
        step = self._advance(trace, t, self.energy(v), self.off_w, self.max_off_s, target_e=self.energy(self.on_v),
                             points=rc.points)
        rc.harvested_j, rc.consumed_j, rc.wasted_j = step.harvested, step.consumed, step.wasted
        if step.stopped == "target":
            rc.t_on = step.t
        elif step.stopped == "never":
            rc.reason = f"from t={step.t:.6g} s on, the harvester gives no more than the board's off-state draw"
        else:
            rc.reason = f"not recharged to {self.on_v} V within max_off_s = {self.max_off_s:.6g} s"
        return rc


@dataclasses.dataclass
class Campaign:
    """A sequence of boots and recharges on one time axis."""
    phases: list               # BootResult and Recharge, in time order
    stopped: str | None        # why the campaign stopped before its boots ran out (a recharge that never ends)
    t_end: float

    @property
    def boots(self) -> list[BootResult]:
        return [p for p in self.phases if isinstance(p, BootResult)]

    @property
    def recharges(self) -> list[Recharge]:
        return [p for p in self.phases if isinstance(p, Recharge)]

    @property
    def harvested_j(self) -> float:
        return sum(b.harvested_j for b in self.boots) + sum(r.harvested_j for r in self.recharges)

    @property
    def consumed_j(self) -> float:
        return sum(b.consumed_j for b in self.boots) + sum(r.consumed_j for r in self.recharges)

    def series(self) -> tuple[list[float], list[float]]:
        """Capacitor voltage over time: (t, v) at every breakpoint of every boot and recharge, in order."""
        pts = [p for phase in self.phases for p in phase.points]
        return [p[0] for p in pts], [p[1] for p in pts]

    def summary(self) -> dict:
        return {"boots": len(self.boots), "cuts": sum(b.cut for b in self.boots),
                "warnings": sum(b.warn_at_instruction is not None for b in self.boots),
                "instructions": sum(b.instructions for b in self.boots), "t_end_s": self.t_end,
                "harvested_j": self.harvested_j, "consumed_j": self.consumed_j,
                "off_s": sum(r.off_s or 0.0 for r in self.recharges), "stopped": self.stopped}


NextBoot = Callable[[int, "BootResult | None"], "Sequence[Event] | None"]


def simulate(model: EnergyModel, trace: Trace, boots: Iterable[Sequence[Event]] | NextBoot, t: float = 0.0,
             v: float | None = None) -> Campaign:
    """Run boots one after another: after a cut the board is off until the capacitor is back at V_on, after a
    completed boot the next one starts at once. `boots` is a list of timelines or a function
    (index, previous BootResult or None) -> the next timeline, or None to stop (what a campaign that resumes
    from checkpoints needs). Starts at time t with voltage v (default V_on; below V_on it charges first)."""
    v = model.on_v if v is None else v
    out = Campaign(phases=[], stopped=None, t_end=t)
    if v < model.on_v:
        rc = model.recharge(trace, t, v)
        out.phases.append(rc)
        if rc.t_on is None:
            out.stopped = rc.reason
            return out
        t, v = rc.t_on, model.on_v
    source = boots if callable(boots) else iter(boots)
    prev: BootResult | None = None
    i = 0
    while True:
        events = source(i, prev) if callable(source) else next(source, None)
        if events is None:
            break
        prev = model.run_boot(trace, events, t, v)
        out.phases.append(prev)
        t, v = prev.t_end, prev.v_end
        if prev.cut:
            rc = model.recharge(trace, t, v)
            out.phases.append(rc)
            if rc.t_on is None:
                out.stopped = rc.reason
                break
            t, v = rc.t_on, model.on_v
        i += 1
    out.t_end = t
    return out
