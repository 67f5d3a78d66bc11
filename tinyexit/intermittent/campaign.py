"""Power-failure campaigns on the host: cut the power at random points (after k NVM events, i.e. possibly
in the middle of a checkpoint write, or after k work units), reboot with the NVM kept and RAM lost, until
the inference's result is committed; then compare the committed result, read from the NVM image by an
independent parser (slots.py), with the uninterrupted run's bytes.

The oracle of every input is its uninterrupted run (same binary, no cut) on a blank NVM."""
from __future__ import annotations

import dataclasses
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots
from tinyexit.intermittent.host import Boot, Granularity, HostTarget

KINDS = ("events", "units")


@dataclass(frozen=True)
class Oracle:
    """The uninterrupted run of one input."""
    exit_index: int
    output: bytes
    units: int          # work units of the whole inference
    events: int         # NVM events (words written + pages erased)
    commits: int
    nvm_bytes: int      # checkpoint bytes written (headers + payloads, the result included)


@dataclass
class Failure:
    kind: str                       # wrong-result | lost-checkpoint | crash | no-progress | oracle-mismatch
    inference: int
    input_id: int
    detail: str
    cuts: list = field(default_factory=list)   # [(kind, k), ...] of this inference up to the failure
    nvm_at_start: str | None = None            # file with the NVM image when this inference began
    low_energy: list = field(default_factory=list)   # per boot: work units before low energy, or None

    def replay_hint(self) -> str:
        names = {"events": "TX_CUT_EVENTS", "units": "TX_CUT_UNITS", "insns": "limit"}
        seq = " ".join(f"{names.get(k, k)}={n}" for k, n in self.cuts)
        low = ("; low energy per boot after units: " + " ".join("-" if u is None else str(u) for u in self.low_energy)
               if any(u is not None for u in self.low_energy) else "")
        return (f"inference {self.inference} (input id {self.input_id}): {self.kind}: {self.detail}; "
                f"cuts in order: {seq or '(none)'}{low}"
                + (f"; NVM image at its start: {self.nvm_at_start}" if self.nvm_at_start else ""))


@dataclass
class CampaignReport:
    granularity: str
    seed: int
    inputs: int
    cuts: int = 0
    cuts_in_commits: int = 0        # cut after k NVM events: inside a checkpoint write (erase/header/payload/CRC)
    cuts_between_commits: int = 0   # cut after k work units
    inferences: int = 0
    completed: int = 0
    wrong_results: int = 0
    lost_checkpoints: int = 0       # a boot found an older state than an earlier boot had committed
    crashes: int = 0                # a boot ended neither by a cut nor by committing (e.g. an NVMC rule broken)
    boots: int = 0
    reexecuted_units: int = 0
    units_per_inference: float = 0.0
    nvm_bytes_per_inference: float = 0.0   # checkpoint bytes written by an uninterrupted inference
    commits_per_inference: float = 0.0
    nvm_bytes_per_inference_baseline: float = 0.0   # granularity 'none': the result record only
    nvm_bytes_used: int = 0                 # NVM the slots occupy
    slots: int = 2
    reference_checked: int = 0      # uninterrupted runs checked against the reference (TFLM)
    low_energy: float = 0.0         # probability per boot of a low-energy signal
    exits: dict = field(default_factory=dict)   # committed results per exit index
    failures: list[Failure] = field(default_factory=list)

    @property
    def mean_reexecuted_units_per_cut(self) -> float:
        return self.reexecuted_units / self.cuts if self.cuts else 0.0

    @property
    def ok(self) -> bool:
        return (self.wrong_results == 0 and self.lost_checkpoints == 0 and self.crashes == 0
                and self.completed == self.inferences and not self.failures)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean_reexecuted_units_per_cut"] = self.mean_reexecuted_units_per_cut
        d["checkpoint_overhead_nvm_bytes_per_inference"] = (self.nvm_bytes_per_inference
                                                            - self.nvm_bytes_per_inference_baseline)
        d["ok"] = self.ok
        return d

    def table(self) -> str:
        lines = [
            f"granularity {self.granularity}, seed {self.seed}, {self.inputs} inputs",
            f"cuts {self.cuts} ({self.cuts_in_commits} inside checkpoint writes, {self.cuts_between_commits} "
            f"between them) over {self.boots} boots",
            f"inferences {self.inferences}, completed {self.completed}, wrong results {self.wrong_results}, "
            f"lost checkpoints {self.lost_checkpoints}, crashes {self.crashes}; committed per exit: "
            + ", ".join(f"exit {k}: {v}" for k, v in sorted(self.exits.items()))
            + (f"; uninterrupted runs equal to the reference: {self.reference_checked}" if self.reference_checked
               else ""),
            (f"re-executed work: {self.reexecuted_units} units, {self.mean_reexecuted_units_per_cut:.2f} per cut "
             f"(an inference is {self.units_per_inference:.0f} units)" if not self.low_energy else
             f"low energy signalled in {100 * self.low_energy:.0f} % of the boots (re-executed work not "
             f"measured: inferences end at different exits)"),
            f"checkpoints per inference (continuous power): {self.commits_per_inference:.1f} commits, "
            f"{self.nvm_bytes_per_inference:,.0f} NVM bytes written (result only: "
            f"{self.nvm_bytes_per_inference_baseline:,.0f}); NVM used: {self.nvm_bytes_used:,} bytes ({self.slots} slots)",
        ]
        for f in self.failures[:10]:
            lines.append("FAIL " + f.replay_hint())
        if len(self.failures) > 10:
            lines.append(f"... and {len(self.failures) - 10} more failures")
        return "\n".join(lines)


def uninterrupted(target: HostTarget, input_path: Path, input_id: int, granularity: Granularity, *,
                  threshold: int | None = None, low_energy_units: int | None = None) -> Oracle:
    """One inference without a cut, from a blank NVM."""
    target.erase_nvm()
    b = target.boot(input_path, input_id, granularity, threshold=threshold, low_energy_units=low_energy_units)
    if b.returncode != 0 or b.output is None:
        raise TinyexitError(f"the uninterrupted run failed (status {b.returncode}):\n{b.stderr.strip()}")
    return Oracle(b.exit_index, b.output, b.units, b.events, b.commits, b.nvm_bytes)


def run_campaign(target: HostTarget, inputs: Sequence[bytes], *, cuts: int, seed: int = 0,
                 granularity: Granularity = Granularity(), kinds: Sequence[str] = KINDS,
                 max_cuts_per_inference: int = 6, max_boots_per_inference: int = 2000,
                 threshold: int | None = None, work_dir: str | Path | None = None,
                 reference: Callable[[bytes], list[bytes]] | None = None,
                 low_energy: float = 0.0) -> CampaignReport:
    """Runs inferences over `inputs` (round robin, a new input id each time) until `cuts` power cuts have
    happened; each inference takes 1..max_cuts_per_inference random cuts and then runs to its committed
    result. `target`'s NVM file is kept across inferences (a new inference meets the previous one's
    result record, as on a device). `reference(input) -> [output of exit 0, exit 1, ...]` (e.g. TFLM on the
    int8 segments) checks the uninterrupted runs themselves. `low_energy`: probability that a boot signals
    low energy (tx_hal_low_energy) after a random number of work units; the pipeline then ends at the next
    exit, and the committed result must equal the uninterrupted output of the exit it records."""
    if not 0.0 <= low_energy <= 1.0:
        raise TinyexitError(f"low_energy is a probability per boot, got {low_energy}")
    if not inputs:
        raise TinyexitError("a campaign needs at least one input")
    for k in kinds:
        if k not in KINDS:
            raise TinyexitError(f"unknown cut kind {k!r}; use {KINDS}")
    rng = random.Random(seed)
    tmp = tempfile.TemporaryDirectory(prefix="tinyexit-powerfail-") if work_dir is None else None
    work = Path(tmp.name if tmp else work_dir)
    work.mkdir(parents=True, exist_ok=True)
    keep = None if tmp else work
    report = CampaignReport(granularity=str(granularity), seed=seed, inputs=len(inputs), low_energy=low_energy)
    try:
        input_paths = []
        for j, data in enumerate(inputs):
            p = work / f"input{j}.bin"
            p.write_bytes(bytes(data))
            input_paths.append(p)
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

        target.erase_nvm()
        last_seq = None
        inference = 0
        while report.cuts < cuts:
            j = inference % n
            input_id = inference + 1
            oracle = oracles[j]
            start_image = target.nvm_image()
            want_cuts = rng.randint(1, max_cuts_per_inference)
            log: list[tuple[str, int]] = []
            lows: list[int | None] = []
            units = 0
            done = None
            report.inferences += 1
            for _ in range(max_boots_per_inference):
                kind = rng.choice(list(kinds))
                k = None
                if len(log) < want_cuts and report.cuts < cuts:
                    k = rng.randint(1, max(1, oracle.events if kind == "events" else oracle.units))
                low = rng.randint(1, max(1, oracle.units)) if low_energy and rng.random() < low_energy else None
                lows.append(low)
                b = target.boot(input_paths[j], input_id, granularity, threshold=threshold,
                                cut_events=k if kind == "events" else None,
                                cut_units=k if kind == "units" else None, low_energy_units=low)
                report.boots += 1
                units += b.units
                if k is not None:
                    log.append((kind, k))
                rec = target.newest()
                if rec is None and last_seq is not None or rec is not None and last_seq is not None and \
                        ((rec.seq - last_seq) & 0xFFFFFFFF) >= 0x80000000:
                    report.lost_checkpoints += 1
                    report.failures.append(_failure(keep, "lost-checkpoint", inference, input_id,
                                                    f"after this boot the newest valid checkpoint is "
                                                    f"{'none' if rec is None else 'seq %d' % rec.seq}, "
                                                    f"an earlier boot had committed seq {last_seq}",
                                                    log, start_image, lows))
                if rec is not None:
                    last_seq = rec.seq
                if b.cut:
                    report.cuts += 1
                    if kind == "events":
                        report.cuts_in_commits += 1
                    else:
                        report.cuts_between_commits += 1
                    continue
                if b.returncode != 0 or b.output is None:
                    report.crashes += 1
                    report.failures.append(_failure(keep, "crash", inference, input_id,
                                                    f"status {b.returncode}: {b.stderr.strip()[-300:]}",
                                                    log, start_image, lows))
                    break
                done = (b, rec)
                break
            else:
                report.failures.append(_failure(keep, "no-progress", inference, input_id,
                                                f"no result after {max_boots_per_inference} boots", log,
                                                start_image, lows))
            inference += 1
            if done is None:
                # a crash leaves the NVM in whatever state; later inferences start from a blank one
                target.erase_nvm()
                last_seq = None
                continue
            b, rec = done
            report.completed += 1
            if rec is not None and rec.done:
                report.exits[rec.exit_index] = report.exits.get(rec.exit_index, 0) + 1
            if not low_energy:
                # with low energy an inference may legitimately stop earlier than the oracle's exit
                report.reexecuted_units += max(0, units - oracle.units)
            committed = (rec.exit_index, rec.payload) if rec is not None and rec.done and \
                rec.input_id == input_id else None
            if low_energy and committed is not None:
                # low energy may end the inference at any exit: compare with that exit's own output
                want_exit = committed[0]
                expected = exit_outputs[j].get(want_exit)
                if expected is None and reference is not None:
                    ref = reference(inputs[j])
                    expected = bytes(ref[want_exit]) if want_exit < len(ref) else None
            else:
                want_exit, expected = oracle.exit_index, oracle.output
            if committed != (want_exit, expected) or (b.exit_index, b.output) != committed:
                report.wrong_results += 1
                got = "nothing committed" if committed is None else f"exit {committed[0]} {committed[1].hex()}"
                report.failures.append(_failure(keep, "wrong-result", inference - 1, input_id,
                                                f"committed {got}, reported exit {b.exit_index} "
                                                f"{b.output.hex() if b.output else None}, expected exit {want_exit} "
                                                f"{expected.hex() if expected else '(no uninterrupted run ends there)'}",
                                                log, start_image, lows))
        return report
    finally:
        if tmp:
            tmp.cleanup()


def _failure(work: Path | None, kind: str, inference: int, input_id: int, detail: str, log,
             start_image: bytes, lows=()) -> Failure:
    """A failure; with a kept work folder, the NVM image at the inference's start is saved for a replay."""
    path = None
    if work is not None:
        path = work / f"failure{inference}_{kind}.nvm"
        path.write_bytes(start_image)
    return Failure(kind, inference, input_id, detail, list(log), str(path) if path else None, list(lows))


def replay(target: HostTarget, failure: Failure, input_path: str | Path, granularity: Granularity, *,
           threshold: int | None = None) -> Boot:
    """Re-runs a failed inference exactly: the NVM image it started from, the same cuts in the same order,
    then one boot without a cut; returns that last boot (its result is what the campaign saw)."""
    if not failure.nvm_at_start:
        raise TinyexitError("this failure kept no NVM image; run the campaign with a work folder to replay it")
    target.nvm_path.write_bytes(Path(failure.nvm_at_start).read_bytes())
    lows = list(failure.low_energy) + [None] * (len(failure.cuts) + 1)
    for n, (kind, k) in enumerate(failure.cuts):
        target.boot(input_path, failure.input_id, granularity, threshold=threshold, low_energy_units=lows[n],
                    cut_events=k if kind == "events" else None, cut_units=k if kind == "units" else None)
    return target.boot(input_path, failure.input_id, granularity, threshold=threshold,
                       low_energy_units=lows[len(failure.cuts)])
