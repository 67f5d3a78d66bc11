"""Power-failure campaigns on the host: cut the power at random points (after k NVM events, i.e. possibly
in the middle of a checkpoint write, or after k work units), reboot with the NVM kept and RAM lost, until
the inference's result is committed; then compare the committed result, read from the NVM image by an
independent parser (slots.py), with the uninterrupted run's bytes.

The oracle of every input is its uninterrupted run (same binary, no cut) on a blank NVM.

Every campaign (host, emulated, shared branch) runs the same loop, `drive`: a backend (CutTarget: HostCuts here,
emulated.EmulatedCuts) supplies the boots and its cut mechanism, a Judge (ResultJudge here, anytime's PointJudge)
what must hold of each inference."""
from __future__ import annotations

import random
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol, Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots
from tinyexit.intermittent.host import Boot, Granularity, HostTarget
from tinyexit.intermittent.report import CampaignReport, Failure, Oracle

KINDS = ("events", "units")


def uninterrupted(target: HostTarget, input_path: Path, input_id: int, granularity: Granularity, *,
                  threshold: int | None = None, low_energy_units: int | None = None) -> Oracle:
    """One inference without a cut, from a blank NVM."""
    target.erase_nvm()
    b = target.boot(input_path, input_id, granularity, threshold=threshold, low_energy_units=low_energy_units)
    if b.returncode != 0 or b.output is None:
        raise TinyexitError(f"the uninterrupted run failed (status {b.returncode}):\n{b.stderr.strip()}")
    return Oracle(b.exit_index, b.output, b.units, b.events, b.commits, b.nvm_bytes)


# ------------------------------------------------------------------------------------------------ driver

@dataclass
class BootResult:
    """One boot of a campaign as the driver sees it, whatever the backend."""
    cut: tuple[str, int] | None     # the cut this boot was given, as a replay takes it ((kind, N)), or None
    low: int | None                 # the low-energy signal it was given (work units into the boot), or None
    was_cut: bool                   # it ended by that cut
    in_commit: bool                 # ... which landed inside an NVM write (checkpoint or LOW_MARK)
    status: int | None              # exit status of a boot that ended by itself
    exit_index: int | None
    output: bytes | None
    work: int                       # what it ran: work units (host) or instructions (emulated)
    text: str = ""                  # its log, for a crash report
    low_seen: int | None = None     # the signal, when the runtime may have seen it
    low_observed: bool = False      # the runtime certainly polled the signal and ran no further work
    low_marks: int = 0              # LOW_MARK words written (host)
    error: str | None = None        # the backend could not run this boot (the emulator failed it on every
    #                                 attempt): no result, neither the firmware's success nor its failure
    warn: int | None = None         # the power-fail warning it was given (units / instructions), or None


class CutTarget(Protocol):
    """A backend of the campaign driver: the pipeline booted with its NVM kept from boot to boot (RAM lost),
    cut by the backend's own mechanism. `span[kind]`: the size of the uninterrupted inference in the
    backend's cut kinds ("events", "units", "insns"); cuts are drawn in 1..span."""

    def erase_nvm(self) -> None: ...

    def nvm_image(self) -> bytes: ...

    def newest(self) -> slots.SlotRecord | None: ...

    def boot(self, input_index: int, input_id: int, rng: random.Random, cutting: bool,
             draw_low: Callable[[], int | None], span: Mapping[str, int]) -> BootResult:
        """Runs one boot of inference `input_id` on input `input_index`, resuming from the NVM: until a cut
        drawn from `rng` when `cutting`, else to the end; `draw_low()` gives its low-energy signal."""

    def retries(self) -> list[dict]:
        """Boots this backend re-ran because its emulator failed them (for the report)."""


class Judge(Protocol):
    """What a campaign checks: follows each inference boot by boot and judges its committed result."""

    def start(self, input_index: int, input_id: int) -> None: ...

    def draw_low(self, rng: random.Random) -> int | None: ...

    def before_boot(self, rec: slots.SlotRecord | None) -> None: ...

    def after_boot(self, boot: BootResult, rec: slots.SlotRecord | None, fail: Callable[[str, str], None]) -> None: ...

    def finish(self, boot: BootResult, rec: slots.SlotRecord | None, spent: int,
               fail: Callable[[str, str], None]) -> None:
        """The inference committed (`spent`: the work of all its boots); failures go through fail(kind, detail)."""

    def abandon(self) -> None:
        """The inference ended without a result; the NVM is erased for the next one."""


def drive(target: CutTarget, judge: Judge, report: CampaignReport, spans: Sequence[Mapping[str, int]], *,
          cuts: int, rng: random.Random, max_cuts_per_inference: int, max_boots_per_inference: int,
          keep: Path | None) -> CampaignReport:
    """The campaign loop: inferences over the inputs (round robin, a new input id each time) until `cuts` power
    cuts have happened; each takes 1..max_cuts_per_inference cuts, then runs to its committed result. The NVM
    is kept across inferences (a new inference meets the previous one's result record, as on a device).
    A boot the backend could not run (BootResult.error: the emulator failed it on every attempt) ends the
    campaign with a failure of kind "emulator": no verdict is drawn from it."""
    target.erase_nvm()
    inference = 0
    broken = False
    while report.cuts < cuts and not broken:
        j = inference % len(spans)
        input_id = inference + 1
        start_image = target.nvm_image()
        want_cuts = rng.randint(1, max_cuts_per_inference)
        log: list[tuple[str, int]] = []
        lows: list[int | None] = []
        warns: list[int | None] = []

        def fail(kind: str, detail: str, number=inference, input_id=input_id, log=log, start_image=start_image,
                 lows=lows, warns=warns) -> None:
            report.failures.append(_failure(keep, kind, number, input_id, detail, log, start_image, lows, warns))

        judge.start(j, input_id)
        spent = 0
        done = None
        report.inferences += 1
        for _ in range(max_boots_per_inference):
            judge.before_boot(target.newest())
            b = target.boot(j, input_id, rng, len(log) < want_cuts and report.cuts < cuts,
                            lambda: judge.draw_low(rng), spans[j])
            lows.append(b.low)
            warns.append(b.warn)
            report.boots += 1
            spent += b.work
            if b.cut is not None:
                log.append(b.cut)
            if b.error is not None:
                fail("emulator", b.error)   # not a crash of the firmware: this inference has no verdict
                broken = True
                break
            rec = target.newest()
            judge.after_boot(b, rec, fail)
            if b.was_cut:
                report.cuts += 1
                if b.in_commit:
                    report.cuts_in_commits += 1
                else:
                    report.cuts_between_commits += 1
                continue
            if b.status != 0 or b.output is None:
                report.crashes += 1
                fail("crash", f"status {b.status}: {b.text.strip()[-300:]}")
                break
            done = (b, rec)
            break
        else:
            fail("no-progress", f"no result after {max_boots_per_inference} boots")
        inference += 1
        if done is None:
            # a crash leaves the NVM in whatever state; later inferences start from a blank one
            target.erase_nvm()
            judge.abandon()
            continue
        report.completed += 1
        judge.finish(*done, spent, fail)
    report.emulator_retries = target.retries()
    return report


def _failure(work: Path | None, kind: str, inference: int, input_id: int, detail: str, log,
             start_image: bytes, lows=(), warns=()) -> Failure:
    """A failure; with a kept work folder, the NVM image at the inference's start is saved for a replay."""
    path = None
    if work is not None:
        path = work / f"failure{inference}_{kind}.nvm"
        path.write_bytes(start_image)
    return Failure(kind, inference, input_id, detail, list(log), str(path) if path else None, list(lows),
                   list(warns))


@contextmanager
def work_folder(work_dir: str | Path | None, prefix: str) -> Iterator[tuple[Path, Path | None]]:
    """(folder, kept folder): `work_dir`, or a temporary folder (then None is kept: no replay images)."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix) if work_dir is None else None
    work = Path(tmp.name if tmp else work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work, (None if tmp else work)
    finally:
        if tmp:
            tmp.cleanup()


def write_inputs(work: Path, inputs: Sequence[bytes]) -> list[Path]:
    paths = []
    for j, data in enumerate(inputs):
        p = work / f"input{j}.bin"
        p.write_bytes(bytes(data))
        paths.append(p)
    return paths


def check_campaign_args(inputs: Sequence[bytes], low_energy: float, kinds: Sequence[str] = KINDS) -> None:
    if not 0.0 <= low_energy <= 1.0:
        raise TinyexitError(f"low_energy is a probability per boot, got {low_energy}")
    if not inputs:
        raise TinyexitError("a campaign needs at least one input")
    for k in kinds:
        if k not in KINDS:
            raise TinyexitError(f"unknown cut kind {k!r}; use {KINDS}")


class HostCuts:
    """Host backend: the process cuts itself after k NVM events (possibly inside a checkpoint write) or k work
    units (TX_CUT_EVENTS / TX_CUT_UNITS), the kind drawn for each boot."""

    def __init__(self, target: HostTarget, input_paths: Sequence[Path], granularity: Granularity, *,
                 threshold: int | None = None, kinds: Sequence[str] = KINDS, warn: float = 0.0):
        self.target, self.input_paths, self.granularity = target, list(input_paths), granularity
        self.threshold, self.kinds, self.warn = threshold, list(kinds), warn
        self.jit_commits = 0   # just-in-time commits of all boots (TXSTAT; a cut boot reports none)

    def erase_nvm(self) -> None:
        self.target.erase_nvm()

    def nvm_image(self) -> bytes:
        return self.target.nvm_image()

    def newest(self) -> slots.SlotRecord | None:
        return self.target.newest()

    def retries(self) -> list[dict]:
        return []  # a host process is not retried: its cut is its own exit

    def boot(self, input_index: int, input_id: int, rng: random.Random, cutting: bool,
             draw_low: Callable[[], int | None], span: Mapping[str, int]) -> BootResult:
        kind = rng.choice(self.kinds)
        # power-fail warnings (just-in-time checkpoints): every cut boot is warned first, as on a capacitor, and
        # its cut drawn after the warning (units) or over the NVM events of a warned boot (events: inside the
        # preparation, the JIT commit or the result); other boots are warned with probability `warn`
        warn = rng.randint(1, max(1, span["units"])) if self.warn and (cutting or rng.random() < self.warn) else None
        if not cutting:
            k = None
        elif warn is not None and kind == "units":
            k = rng.randint(warn, max(warn, span["units"]))
        else:
            k = rng.randint(1, max(1, span["events_warned" if warn is not None and kind == "events" else kind]))
        low = draw_low()
        b = self.target.boot(self.input_paths[input_index], input_id, self.granularity, threshold=self.threshold,
                             cut_events=k if kind == "events" else None, cut_units=k if kind == "units" else None,
                             low_energy_units=low, warn_units=warn)
        self.jit_commits += b.kv.get("jit_commits", 0)
        seen = low is not None and b.units >= low
        # a units cut ends the piece of work that reached it, before the runtime polls again
        observed = seen and (not b.cut or kind == "units" and b.units - b.kv.get("last", b.units) >= low)
        return BootResult(None if k is None else (kind, k), low, b.cut, kind == "events", b.returncode,
                          b.exit_index, b.output, b.units, b.stderr, low if seen else None, observed,
                          b.kv.get("low_marks", 0), warn=warn)


class ResultJudge:
    """The plain pipeline's checks: no boot loses a committed checkpoint, and the committed result (read from
    the NVM) and the reported one equal the uninterrupted run's, or with low energy the uninterrupted output of
    the exit the result records. `rework(input_index, spent)` counts the re-executed work of an inference."""

    def __init__(self, report: CampaignReport, oracles: Sequence[tuple[int, bytes]], *,
                 rework: Callable[[int, int], None] | None = None, low_energy: float = 0.0,
                 low_span: Sequence[int] = (), exit_outputs: Sequence[dict] = (),
                 reference: Callable[[bytes], list[bytes]] | None = None, inputs: Sequence[bytes] = ()):
        self.report, self.oracles, self.rework = report, oracles, rework
        self.low_energy, self.low_span, self.exit_outputs = low_energy, low_span, exit_outputs
        self.reference, self.inputs = reference, inputs
        self.last_seq: int | None = None

    def start(self, input_index: int, input_id: int) -> None:
        self.j, self.input_id = input_index, input_id

    def draw_low(self, rng: random.Random) -> int | None:
        if self.low_energy and rng.random() < self.low_energy:
            return rng.randint(1, max(1, self.low_span[self.j]))
        return None

    def before_boot(self, rec) -> None:
        pass

    def after_boot(self, boot: BootResult, rec, fail) -> None:
        last = self.last_seq
        if last is not None and (rec is None or ((rec.seq - last) & 0xFFFFFFFF) >= 0x80000000):
            self.report.lost_checkpoints += 1
            fail("lost-checkpoint", f"after this boot the newest valid checkpoint is "
                                    f"{'none' if rec is None else 'seq %d' % rec.seq}, "
                                    f"an earlier boot had committed seq {last}")
        if rec is not None:
            self.last_seq = rec.seq

    def abandon(self) -> None:
        self.last_seq = None

    def finish(self, b: BootResult, rec, spent: int, fail) -> None:
        report, j = self.report, self.j
        if rec is not None and rec.done:
            report.exits[rec.exit_index] = report.exits.get(rec.exit_index, 0) + 1
        if self.rework is not None:
            self.rework(j, spent)
        committed = (rec.exit_index, rec.payload) if rec is not None and rec.done and \
            rec.input_id == self.input_id else None
        if self.low_energy and committed is not None:
            # low energy may end the inference at any exit: compare with that exit's own output
            want_exit = committed[0]
            expected = self.exit_outputs[j].get(want_exit)
            if expected is None and self.reference is not None:
                ref = self.reference(self.inputs[j])
                expected = bytes(ref[want_exit]) if want_exit < len(ref) else None
        else:
            want_exit, expected = self.oracles[j]
        if committed != (want_exit, expected) or (b.exit_index, b.output) != committed:
            report.wrong_results += 1
            got = "nothing committed" if committed is None else f"exit {committed[0]} {committed[1].hex()}"
            fail("wrong-result", f"committed {got}, reported exit {b.exit_index} "
                                 f"{b.output.hex() if b.output else None}, expected exit {want_exit} "
                                 f"{expected.hex() if expected else '(no uninterrupted run ends there)'}")


# ------------------------------------------------------------------------------------------------ host

def run_campaign(target: HostTarget, inputs: Sequence[bytes], *, cuts: int, seed: int = 0,
                 granularity: Granularity = Granularity(), kinds: Sequence[str] = KINDS,
                 max_cuts_per_inference: int = 6, max_boots_per_inference: int = 2000,
                 threshold: int | None = None, work_dir: str | Path | None = None,
                 reference: Callable[[bytes], list[bytes]] | None = None,
                 low_energy: float = 0.0, warn: float = 0.0) -> CampaignReport:
    """Runs inferences over `inputs` (round robin, a new input id each time) until `cuts` power cuts have
    happened; each inference takes 1..max_cuts_per_inference random cuts and then runs to its committed
    result. `target`'s NVM file is kept across inferences (a new inference meets the previous one's
    result record, as on a device). `reference(input) -> [output of exit 0, exit 1, ...]` (e.g. TFLM on the
    int8 segments) checks the uninterrupted runs themselves. `low_energy`: probability that a boot signals
    low energy (tx_hal_low_energy) after a random number of work units; the pipeline then ends at the next
    exit, and the committed result must equal the uninterrupted output of the exit it records. `warn` (> 0):
    power-fail warnings for just-in-time granularities: every cut boot is warned at a random work unit and cut
    after it (or at a random NVM event of a warned boot, also inside the JIT commit); other boots are warned
    with probability `warn` (HostCuts)."""
    check_campaign_args(inputs, low_energy, kinds)
    rng = random.Random(seed)
    report = CampaignReport(granularity=str(granularity), seed=seed, inputs=len(inputs), low_energy=low_energy)
    with work_folder(work_dir, "tinyexit-powerfail-") as (work, keep):
        input_paths = write_inputs(work, inputs)
        # Oracles on a separate NVM file, so the campaign's NVM history is its own.
        oracle_target = HostTarget(target.exe, work / "oracle_nvm.bin")
        oracles, baseline, exit_outputs = [], [], []
        for j, p in enumerate(input_paths):
            o = uninterrupted(oracle_target, p, 0xFFFF0000 + j, granularity, threshold=threshold)
            b = uninterrupted(oracle_target, p, 0xFFFF0000 + j, Granularity("none"), threshold=threshold)
            if (b.exit_index, b.output) != (o.exit_index, o.output):
                report.failures.append(Failure("oracle-mismatch", -1, j, "checkpointing changed the result of "
                                               f"an uninterrupted run: {o.output.hex()} vs {b.output.hex()}"))
            if reference is not None:
                ref = reference(inputs[j])
                report.reference_checked += 1
                if o.exit_index >= len(ref) or bytes(ref[o.exit_index]) != o.output:
                    want = bytes(ref[o.exit_index]).hex() if o.exit_index < len(ref) else "no such exit"
                    report.failures.append(Failure("oracle-mismatch", -1, j, f"uninterrupted run gives exit "
                                                   f"{o.exit_index} {o.output.hex()}, the reference {want}"))
            oracles.append(o)
            baseline.append(b)
            outs = {o.exit_index: o.output}
            if low_energy > 0:
                # every exit the pipeline can end at: low energy at points spread over the inference
                for u in sorted({1 + (o.units - 1) * t // 15 for t in range(16)}):
                    e = uninterrupted(oracle_target, p, 0xFFFF0000 + j, granularity, threshold=threshold,
                                      low_energy_units=u)
                    if outs.setdefault(e.exit_index, e.output) != e.output:
                        report.failures.append(Failure("oracle-mismatch", -1, j, f"exit {e.exit_index} gave two "
                                                       "different outputs in uninterrupted runs"))
            exit_outputs.append(outs)
        n = len(oracles)
        report.units_per_inference = sum(o.units for o in oracles) / n
        report.nvm_bytes_per_inference = sum(o.nvm_bytes for o in oracles) / n
        report.commits_per_inference = sum(o.commits for o in oracles) / n
        report.nvm_bytes_per_inference_baseline = sum(b.nvm_bytes for b in baseline) / n
        report.nvm_bytes_used = target.info["nvm_bytes"]
        report.slots = target.num_slots

        def rework(j: int, spent: int) -> None:
            report.reexecuted_units += max(0, spent - oracles[j].units)

        # with low energy an inference may legitimately stop earlier than the oracle's exit: no re-executed work
        judge = ResultJudge(report, [(o.exit_index, o.output) for o in oracles],
                            rework=None if low_energy else rework, low_energy=low_energy,
                            low_span=[o.units for o in oracles], exit_outputs=exit_outputs, reference=reference,
                            inputs=inputs)
        spans = [{"events": o.events, "units": o.units, "events_warned": o.events} for o in oracles]
        if warn:   # NVM events of a boot warned half-way: with its JIT commit
            for j, p in enumerate(input_paths):
                oracle_target.erase_nvm()
                b = oracle_target.boot(p, 0xFFFF0000 + j, granularity, threshold=threshold,
                                       warn_units=max(1, oracles[j].units // 2))
                spans[j]["events_warned"] = max(b.events, oracles[j].events)
        backend = HostCuts(target, input_paths, granularity, threshold=threshold, kinds=kinds, warn=warn)
        drive(backend, judge, report, spans, cuts=cuts, rng=rng, max_cuts_per_inference=max_cuts_per_inference,
              max_boots_per_inference=max_boots_per_inference, keep=keep)
        report.jit_commits = backend.jit_commits
        return report


def replay(target: HostTarget, failure: Failure, input_path: str | Path, granularity: Granularity, *,
           threshold: int | None = None) -> Boot:
    """Re-runs a failed inference exactly: the NVM image it started from, the same cuts in the same order,
    then one boot without a cut; returns that last boot (its result is what the campaign saw)."""
    if not failure.nvm_at_start:
        raise TinyexitError("this failure kept no NVM image; run the campaign with a work folder to replay it")
    target.nvm_path.write_bytes(Path(failure.nvm_at_start).read_bytes())
    lows = list(failure.low_energy) + [None] * (len(failure.cuts) + 1)
    warns = list(failure.warnings) + [None] * (len(failure.cuts) + 1)
    for n, (kind, k) in enumerate(failure.cuts):
        target.boot(input_path, failure.input_id, granularity, threshold=threshold, low_energy_units=lows[n],
                    cut_events=k if kind == "events" else None, cut_units=k if kind == "units" else None,
                    warn_units=warns[n])
    return target.boot(input_path, failure.input_id, granularity, threshold=threshold,
                       low_energy_units=lows[len(failure.cuts)], warn_units=warns[len(failure.cuts)])
