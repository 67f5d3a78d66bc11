"""Harvester-driven emulated campaign: the emulated board powered from a capacitor that a harvester charges
(energy.py, harvest.py). Nothing is drawn at random: the energy model decides every cut, warning and off-time.

Per boot (deterministic emulation, so a boot is replayed exactly from the same NVM image and mailbox):
  1. probe: run the boot uncut from the current NVM image and read its NVM events (erases, writes, commit
     marks, result; nvm_events.py, instruction counts to within a SysTick tick);
  2. ask the energy model where V falls to V_off (the cut) and through V_warn (the warning) on that timeline,
     from the boot's start time and voltage;
  3. with a warning and a configuration that uses it: the energy-adaptive branch takes it as its low-energy
     signal (the mailbox's low_energy_units: the work units the boot has run at the warning, read off the probe's
     commit marks), a just-in-time configuration as the warning instruction; re-probe with it (the prefix up
     to the warning is the same, so the warning stays where it was) and ask the model again;
  4. a cut: restore the NVM image and boot again cut after exactly that many instructions, then the board is
     off until the harvester recharges the capacitor to V_on. No cut: the probe was the boot.
A cut inside an erase or write is replayed at that operation's logged instruction count (+-40): the emulated
NVM operation does not happen, the energy model charged the part that ran. The firmware polls the signal at
work-unit ends (a whole layer with layer checkpoints), so a warning inside a long step acts at its end.
Time advances by boots and recharges; the campaign starts with the capacitor at V_off (its first charge is
harvested too). An inference's latency runs from the start of its first boot to its result's commit, off-times
included. Every completed result is checked against the uninterrupted run (or, for the shared branch, the int8
chain on TFLM at the point it answered) and against the NVM's committed record: `wrong` must be 0.

The loop (`run_harvested`) sees the board through a small interface (HarvestBoard) so that its bookkeeping is
testable without QEMU; `QemuBoard` is the emulated one, `harvested_campaign` builds everything for a run.
"""
from __future__ import annotations

import dataclasses
import inspect
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.energy import Campaign, EnergyModel, Flash, timeline
from tinyexit.intermittent.harvest import Trace
from tinyexit.pipeline import Granularity

# NVM event kinds of the emulated flash -> the energy timeline's kinds ("commit" and "result" are marks)
_TIMELINE_KIND = {"erase": "erase", "write": "write", "commit_end": "commit", "result": "result"}


@dataclass(frozen=True)
class Job:
    """What one boot runs (the mailbox)."""
    input_index: int
    input_id: int
    granularity: Granularity
    low_energy_units: int | None = None    # the shared branch's low-energy signal after this many work units
    warn_at_instruction: int | None = None  # the emulated POFWARN (just-in-time checkpoints)


@dataclass
class Probe:
    """An uncut boot: its NVM events as (instruction count, kind[, count]) for energy.timeline, its length, and
    its result (exit index, output bytes) when it ends with one."""
    events: list[tuple]
    instructions: int
    result: tuple[int, bytes] | None
    anchors: list[tuple[int, int]] = field(default_factory=list)   # (instruction count, work units run)
    low_latched: bool = False      # the boot resumed with the low-energy latch already set


class HarvestBoard(Protocol):
    def snapshot(self): ...
    def restore(self, snap) -> None: ...
    def probe(self, job: Job) -> Probe: ...
    def cut(self, job: Job, limit: int) -> bool: ...     # True when the boot was cut (it did not end first)
    def committed(self) -> tuple[int, int, bool, int, bytes] | None: ...   # (seq, input id, done, exit, payload)


@dataclass(frozen=True)
class Config:
    """One configuration of a comparison: a granularity and which energy signal the firmware gets."""
    name: str
    granularity: Granularity
    signal: str | None = None      # None | "low_energy" (shared branch) | "warn" (just-in-time)
    warn_v: float | None = None    # the warning level (default: the board file's)
    threshold: int | None = None   # the shared branch's confidence mode (branch_checks.Threshold, T or T:LOW)


def units_at(anchors: Sequence[tuple[int, int]], instruction: int) -> int:
    """Work units run by `instruction`, interpolated between the probe's anchors (commit marks at step ends,
    exact up to the linear interpolation inside a step)."""
    pts = sorted(anchors)
    if not pts or instruction < pts[0][0]:
        return 0
    for (i0, u0), (i1, u1) in zip(pts, pts[1:]):
        if i0 <= instruction < i1:
            return u0 + (u1 - u0) * (instruction - i0) // max(1, i1 - i0)
    return pts[-1][1]


@dataclass
class HarvestedReport:
    config: str
    granularity: str
    harvester: str
    capacitor_f: float
    inferences: int = 0
    boots: int = 0
    cuts: int = 0
    warnings: int = 0
    wrong: int = 0
    lost_checkpoints: int = 0
    emulator_mismatches: int = 0      # a boot the model cut ended before the limit (must stay 0)
    correct: int = 0                  # results whose class equals the label
    labelled: int = 0
    exits: dict = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    flash_erases: int = 0
    harvested_j: float = 0.0
    consumed_j: float = 0.0
    wasted_j: float = 0.0
    seconds: float = 0.0              # simulated
    off_s: float = 0.0
    stopped: str | None = None        # why the campaign ended early (a stalled inference, a dead harvester)
    continuous: dict = field(default_factory=dict)   # one inference on continuous power (energy model)
    flash_lifetime_years_at_1hz: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def inferences_per_mj(self) -> float:
        return self.inferences / (self.harvested_j * 1e3) if self.harvested_j > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def ok(self) -> bool:
        return self.wrong == 0 and self.lost_checkpoints == 0 and self.emulator_mismatches == 0

    def latency(self) -> dict:
        xs = sorted(self.latencies_s)
        if not xs:
            return {"median": None, "p90": None, "max": None}
        return {"median": statistics.median(xs), "p90": xs[min(len(xs) - 1, int(0.9 * len(xs)))], "max": xs[-1]}

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(inferences_per_mj=self.inferences_per_mj, accuracy=self.accuracy, ok=self.ok,
                 latency_s=self.latency(),
                 flash_erases_per_inference=self.flash_erases / self.inferences if self.inferences else None,
                 inferences_per_consumed_mj=self.inferences / (self.consumed_j * 1e3) if self.consumed_j else 0.0)
        return d

    def line(self) -> str:
        lat = self.latency()
        acc = "-" if self.accuracy is None else f"{100 * self.accuracy:.1f} %"
        med = "-" if lat["median"] is None else f"{lat['median']:.3g} s"
        return (f"{self.config}: {self.inferences} inferences in {self.seconds:.3g} s simulated, "
                f"{self.inferences_per_mj:.3g} per harvested mJ, latency median {med}, accuracy {acc}, "
                f"{self.cuts} cuts, wrong {self.wrong}, lost checkpoints {self.lost_checkpoints}"
                + (f"; stopped: {self.stopped}" if self.stopped else ""))


def continuous(model: EnergyModel, probe: Probe) -> dict:
    """One uninterrupted inference on continuous power: its energy and time in the model (no capacitor)."""
    sec = joules = 0.0
    for ev in timeline(probe.events, probe.instructions):
        s, w = model.cost(ev)
        sec, joules = sec + s, joules + s * w
    return {"seconds": sec, "energy_j": joules, "inferences_per_mj": 1e-3 / joules if joules else None,
            "instructions": probe.instructions, "flash_erases": sum(e[2] if len(e) == 3 else 1 for e in probe.events
                                                                    if e[1] == "erase")}


def run_harvested(board: HarvestBoard, model: EnergyModel, trace: Trace, config: Config, *, num_inputs: int,
                  expected: Callable[[int, int], bytes | None], labels: Sequence[int] | None = None,
                  inferences: int | None = None, seconds: float | None = None, max_boots_per_inference: int = 400,
                  first_id: int = 0x48000000, progress=None) -> tuple[HarvestedReport, Campaign]:
    """Inferences over inputs 0..num_inputs-1 (round robin, a new input id each) under `trace` until
    `inferences` are completed or `seconds` of simulated time have passed. `expected(input_index, exit)` gives
    the output an answer at `exit` must have (None: no run ends there). Returns the report and the campaign
    (boots and recharges in time order, for energy_plot.plot_campaign)."""
    if inferences is None and seconds is None:
        raise TinyexitError("a harvested campaign needs a number of inferences or of simulated seconds")
    rep = HarvestedReport(config.name, str(config.granularity), trace.name, model.capacitor_f)
    camp = Campaign(phases=[], stopped=None, t_end=0.0)

    def recharge(t, v):
        rc = model.recharge(trace, t, v)
        camp.phases.append(rc)
        rep.harvested_j += rc.harvested_j
        rep.consumed_j += rc.consumed_j
        rep.wasted_j += rc.wasted_j
        rep.off_s += rc.off_s or 0.0
        return rc

    rc = recharge(0.0, model.off_v)
    t, v = rc.t_on, model.on_v
    last_seq = None
    n = 0
    while t is not None and (inferences is None or n < inferences) and (seconds is None or t < seconds):
        j, boots, t_first = n % num_inputs, 0, t
        job = Job(j, first_id + n, config.granularity)
        result = None
        while result is None:
            if boots >= max_boots_per_inference:
                rep.stopped = (f"inference {n} made no result in {boots} boots (each charge too small for what "
                               f"a boot must finish before it commits)")
                break
            if seconds is not None and t >= seconds:
                break
            boots += 1
            snap = board.snapshot()
            job = dataclasses.replace(job, low_energy_units=None, warn_at_instruction=None)
            probe = board.probe(job)
            events = timeline(probe.events, probe.instructions)
            b = model.run_boot(trace, events, t, v)
            w = b.warn_at_instruction
            if w is not None and config.signal == "low_energy" and not probe.low_latched:
                job = dataclasses.replace(job, low_energy_units=1 + units_at(probe.anchors, w))
            elif w is not None and config.signal == "warn":
                job = dataclasses.replace(job, warn_at_instruction=max(1, w))
            if job.low_energy_units is not None or job.warn_at_instruction is not None:
                board.restore(snap)
                probe = board.probe(job)
                events = timeline(probe.events, probe.instructions)
                b = model.run_boot(trace, events, t, v)
            camp.phases.append(b)
            rep.boots += 1
            rep.warnings += b.warn_at_instruction is not None
            rep.harvested_j += b.harvested_j
            rep.consumed_j += b.consumed_j
            rep.wasted_j += b.wasted_j
            end = len(events) if not b.cut else b.cut_event + (b.cut_during == "erase")
            rep.flash_erases += sum(ev.count for ev in events[:end] if isinstance(ev, Flash) and ev.kind == "erase")
            if b.cut:
                board.restore(snap)
                if not board.cut(job, max(1, b.cut_at_instruction)):
                    rep.emulator_mismatches += 1
                    rep.failures.append(f"inference {n}: the boot cut at {b.cut_at_instruction} ended before it")
                rep.cuts += 1
                rc = recharge(b.t_end, b.v_end)
                t, v = rc.t_on, model.on_v
                if t is None:
                    rep.stopped = rc.reason
            else:
                t, v = b.t_end, b.v_end
                result = probe.result
                if result is None:
                    rep.failures.append(f"inference {n}: a boot ended without a result")
                    rep.wrong += 1
                    result = (-1, b"")
                t_result = next((mt for label, _, mt, _ in b.marks if label == "result"), b.t_end)
            rec = board.committed()
            if last_seq is not None and (rec is None or ((rec[0] - last_seq) & 0xFFFFFFFF) >= 0x80000000):
                rep.lost_checkpoints += 1
                rep.failures.append(f"inference {n}: the newest checkpoint went back from seq {last_seq}")
            last_seq = rec[0] if rec is not None else last_seq
            if t is None:
                break
        if result is None:
            break
        exit_index, output = result
        want = expected(j, exit_index)
        rec = board.committed()
        committed = rec is not None and rec[1:] == (job.input_id, True, exit_index, output)
        if want is None or output != want or not committed:
            rep.wrong += 1
            rep.failures.append(f"inference {n} (input {j}): exit {exit_index} {output.hex()[:32]}, expected "
                                f"{want.hex()[:32] if want else None}, committed in NVM: {committed}")
        rep.inferences += 1
        rep.exits[exit_index] = rep.exits.get(exit_index, 0) + 1
        rep.latencies_s.append(t_result - t_first)
        if labels is not None and output:
            rep.labelled += 1
            rep.correct += int(argmax(output) == labels[j])
        n += 1
        rep.seconds = t
        if progress:
            progress(rep)
    rep.seconds = t if t is not None else camp.phases[-1].t_start
    camp.t_end = rep.seconds
    camp.stopped = rep.stopped
    return rep, camp


def argmax(output: bytes) -> int:
    """The predicted class of int8 scores: the first of the largest."""
    return max(range(len(output)), key=lambda k: (output[k] - 256 if output[k] > 127 else output[k], -k))


# ------------------------------------------------------------------------------------------------ the emulated board

class QemuBoard:
    """HarvestBoard over an EmulatedTarget (emulated.py). `layout` (branch_checks.Layout) of a shared-branch
    pipeline gives the work units at each commit mark, for its low-energy signal."""

    def __init__(self, target, layout=None, threshold: int | None = None):
        """threshold: the shared branch's confidence mode (branch_checks.Threshold: with low energy's own)."""
        from tinyexit.intermittent.nvm_events import read_events
        self.t, self.layout, self._read_events, self.threshold = target, layout, read_events, threshold
        if target.tick_origin is None:
            target.calibrate()
        self.takes_warning = "warn_at_instruction" in inspect.signature(target.mailbox).parameters

    def snapshot(self):
        return self.t.snapshot()

    def restore(self, snap) -> None:
        self.t.restore(snap)

    def _mailbox(self, job: Job) -> None:
        kw = {"low_energy_units": job.low_energy_units, "threshold": self.threshold}
        if job.warn_at_instruction is not None:
            if not self.takes_warning:
                raise TinyexitError("this firmware's mailbox has no warning field (just-in-time checkpoints)")
            kw["warn_at_instruction"] = job.warn_at_instruction
        self.t.mailbox(job.input_index, job.input_id, job.granularity, **kw)

    def _record(self):
        from tinyexit.intermittent import slots
        t = self.t
        if t.slot_size is None:
            return None
        return slots.newest_valid(t.nvm_image(), t.slot_size, t.num_slots, t.log, t.fingerprint)

    def committed(self):
        rec = self._record()
        return None if rec is None else (rec.seq, rec.input_id, rec.done, rec.exit_index, rec.payload)

    def probe(self, job: Job) -> Probe:
        t = self.t
        rec = self._record() if self.layout is not None else None
        self._mailbox(job)
        b = t.boot()
        raw = self._read_events(t.psram, tick_origin=t.tick_origin,
                                instructions_per_tick=t.board.instructions_per_tick or 40)
        events, total = [], b.instructions
        for e in raw:
            kind = _TIMELINE_KIND.get(e.kind)
            if kind is None:
                continue
            at = min(e.instructions, total)
            if events and at < events[-1][0]:
                at = events[-1][0]
            events.append((at, kind, max(1, e.nwords)) if kind == "write" else (at, kind))
        result = (b.exit_index, b.output) if b.exit_code == 0 and b.output is not None else None
        p = Probe(events, total, result)
        if self.layout is not None:
            resumed = rec is not None and rec.input_id == job.input_id and not rec.done
            p.low_latched = resumed and rec.low_energy
            p.anchors = self._anchors(rec if resumed else None, raw, job.granularity,
                                      b.exit_index if result else self.layout.num_points - 1)
        return p

    def _anchors(self, rec, raw, granularity: Granularity, answer: int) -> list[tuple[int, int]]:
        """(instruction count, units run by this boot) at the boot's start, at each commit mark up to the last
        exit point and at the result: the runtime commits at every segment's end and, with layers:N, after every N
        steps inside a stage (counted from the resume), in the walk's order (seg0, pool0, [the branch in confidence
        mode], seg1, ...; tx_checkpoint.c), positions as Layout.position counts them."""
        lay = self.layout
        start = 0 if rec is None else lay.position(rec.stage, rec.step, rec.unit, rec.exit_index)
        every = granularity.every if granularity.mode == "layers" else None
        branch = len(lay.roles) - 1
        walk = [s for k in range(lay.num_points) for s in (2 * k, 2 * k + 1) + ((branch,) if lay.confidence else ())]
        ends, pos, since = [], 0, 0
        for s in walk:
            for i, u in enumerate(lay.units[s]):
                pos += u
                if pos <= start:
                    continue
                since += 1
                last = i == len(lay.units[s]) - 1
                # a segment's end (not a pool's or the branch's), or every N steps inside a stage
                if granularity.mode != "none" and ((last and s % 2 == 0 and s != branch) or
                                                   (every and since >= every and not last)):
                    ends.append(pos - start)
                    since = 0
        marks = [e.instructions for e in raw if e.kind == "commit_begin"]
        out = [(self.t.tick_origin, 0)] + list(zip(marks, ends))
        res = [e.instructions for e in raw if e.kind == "result"]
        if res:
            out.append((res[0], lay.units_to_answer(answer) - start))   # the point that answered
        return out

    def cut(self, job: Job, limit: int) -> bool:
        self._mailbox(job)
        return self.t.boot(limit=limit).cut


# ------------------------------------------------------------------------------------------------ building a setup

@dataclass
class Setup:
    """A built campaign firmware on its emulated board, with its oracle and the inputs' labels."""
    board: QemuBoard
    expected: Callable[[int, int], bytes | None]
    labels: list[int] | None
    num_inputs: int
    reference_checked: int = 0
    cycles_per_instruction: float = 1.0   # the plugin's Cortex-M4 cycle estimate over the uninterrupted runs
    full_depth: list[bytes] = field(default_factory=list)   # each input's output on continuous power

    def continuous_accuracy(self, inferences: int) -> float | None:
        """Accuracy of the continuous-power outputs over the inputs of the first `inferences` (round robin)."""
        if not self.labels or not inferences:
            return None
        js = [n % self.num_inputs for n in range(inferences)]
        return sum(argmax(self.full_depth[j]) == self.labels[j] for j in js) / len(js)


def _cpi(boots) -> float:
    insns = sum(b.window_instructions for b in boots)
    cycles = sum(getattr(b, "window_cycles", 0) for b in boots)
    return cycles / insns if insns and cycles else 1.0


def labelled_inputs(run_dir, qparams: dict, num_inputs: int, seed: int = 0) -> tuple[list[bytes], list[int]]:
    """`num_inputs` labelled test inputs of the run (Run.split("test"), a seeded choice), quantized as the first
    segment's input (int8 bytes for the firmware), and their labels."""
    import numpy as np

    from tinyexit.quantize.qparams import QParams, quantize_array
    from tinyexit.run import Run
    x, y = Run(run_dir).split("test")
    if len(x) == 0:
        raise TinyexitError(f"{run_dir}: the test split is empty; a harvested campaign reports accuracy on it")
    idx = np.random.default_rng(seed).permutation(len(x))[:num_inputs]
    q = quantize_array(x[idx], QParams(float(qparams["scale"]), int(qparams["zero_point"])))
    return [bytes(r.astype(np.int8).tobytes()) for r in q.reshape(len(idx), -1)], [int(v) for v in np.asarray(y)[idx]]


def exit_heads_setup(run_dir, out_dir, board, *, num_inputs: int = 8, seed: int = 0, runner: str | None = None,
                     slots: int | str = 2, nvm_region: int | str | None = None) -> Setup:
    """The run's exit-head pipeline (final exit without a threshold) on `board`'s emulated variant with its
    kernels, over labelled test inputs (a .tflite or a library: random ones); the oracle of each input is its
    uninterrupted run without checkpoints, checked against TFLM. `nvm_region` (bytes or "max", with slots="fit":
    a log over them): the NVM the records spread over (emulated_powerfail.build_in_region)."""
    from tinyexit.intermittent import prepare_library, tflm_reference
    from tinyexit.intermittent.emulated import EmulatedTarget
    from tinyexit.intermittent.emulated_powerfail import build_in_region
    from tinyexit.run import Run
    from tinyexit.intermittent import random_inputs
    out_dir = Path(out_dir)
    lib, pipe = prepare_library(run_dir, out_dir, kernels=board.kernels)
    if Path(run_dir).is_dir() and Run(run_dir).is_quantized():
        inputs, labels = labelled_inputs(run_dir, Run(run_dir).manifest()["segments"][0]["input"], num_inputs, seed)
    else:   # a .tflite or a generated library: no labels, random int8 inputs (no accuracy)
        inputs, labels = random_inputs(num_inputs, pipe.input_size, seed), None
    fw, _ = build_in_region(lib, pipe, inputs, board, out_dir / "emu-harvest", nvm_region, slots=slots)
    et = EmulatedTarget(fw, out_dir / "psram-harvest.img", runner=runner)
    et.calibrate()
    ref = tflm_reference(run_dir)
    oracles, boots = [], []
    for j, x in enumerate(inputs):
        o = et.uninterrupted(j, 0xFFFF0000 + j, Granularity("none"))
        boots.append(o)
        if ref is not None and bytes(ref(x)[o.exit_index]) != o.output:
            raise TinyexitError(f"input {j}: the board's uninterrupted run differs from TFLM; the harvested "
                                f"campaign needs a correct firmware first (tinyexit powerfail --emulate)")
        oracles.append((o.exit_index, o.output))
    et.uninterrupted(0, 0xFFFF0000, Granularity())     # sets the slot size
    et.erase_nvm()
    return Setup(QemuBoard(et), lambda j, k: oracles[j][1] if oracles[j][0] == k else None, labels, num_inputs,
                 reference_checked=len(inputs) if ref is not None else 0, cycles_per_instruction=_cpi(boots),
                 full_depth=[o[1] for o in oracles])


def branch_setup(run_dir, out_dir, board, *, num_inputs: int = 8, seed: int = 0, runner: str | None = None,
                 threshold: int | None = None) -> Setup:
    """RUN/branch's shared exit branch pipeline (tinyexit branch) on `board`'s emulated variant, generated with its
    kernels; the oracle of an answer at point k is the int8 chain on TFLM (branch.branch_reference). `threshold`:
    confidence mode (branch_checks.Threshold, optionally with low energy's own threshold)."""
    from tinyexit.branch import read_branch_manifest
    from tinyexit.branch.firmware import library_models
    from tinyexit.codegen import generate
    from tinyexit.intermittent.branch import branch_dir_of, branch_reference
    from tinyexit.intermittent.branch_checks import Layout, continuous_point
    from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated
    from tinyexit.intermittent.host import HostTarget, build_host
    out_dir = Path(out_dir)
    shared = branch_dir_of(run_dir)
    man = read_branch_manifest(shared)
    lib = out_dir / "branch-lib"
    generate(library_models(shared, man), lib, measure=False, compare_tflm=False, kernels=board.kernels)
    from tinyexit.pipeline import Pipeline
    pipe = Pipeline.from_branch(man).with_library(lib)
    layout = Layout.from_rows(HostTarget(build_host(lib, pipe, out_dir / "branch-host-harvest"),
                                         out_dir / "branch-nvm-harvest.bin").layout()).with_confidence(
        threshold is not None)
    inputs, labels = labelled_inputs(run_dir, man["segments"][0]["input"], num_inputs, seed)
    fw = build_emulated(lib, pipe, inputs, board, out_dir / "branch-emu-harvest")
    et = EmulatedTarget(fw, out_dir / "branch-psram-harvest.img", runner=runner)
    et.calibrate()
    ref = branch_reference(shared)
    outs = [[bytes(r) for r in ref(x)] for x in inputs]
    # on continuous power the answer comes at the first confident point (the last without a threshold)
    answer = [continuous_point(o, threshold) for o in outs]
    b = et.uninterrupted(0, 0xFFFF0000, Granularity(), threshold=threshold)  # sets the slot size
    if (b.exit_index, b.output) != (answer[0], outs[0][answer[0]]):
        raise TinyexitError("the shared branch's uninterrupted run differs from the int8 chain on TFLM")
    et.erase_nvm()
    return Setup(QemuBoard(et, layout, threshold), lambda j, k: outs[j][k] if 0 <= k < len(outs[j]) else None,
                 labels, num_inputs, reference_checked=len(inputs), cycles_per_instruction=_cpi([b]),
                 full_depth=[o[k] for o, k in zip(outs, answer)])
