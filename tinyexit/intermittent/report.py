"""What a power-failure campaign reports: the uninterrupted run of an input (Oracle), a failing cut with what is
needed to replay it (Failure), and the campaign's figures (CampaignReport), shared by every campaign."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence


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
    kind: str                       # wrong-result | lost-checkpoint | crash | no-progress | oracle-mismatch | emulator
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
    # boots re-run because the emulator, not the firmware, failed them ({"boot", "attempt", "reason"} each;
    # the emulated backends; a host campaign has none)
    emulator_retries: list[dict] = field(default_factory=list)

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
        d["emulator_retry_count"] = len(self.emulator_retries)
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
        if self.emulator_retries or getattr(self, "board", ""):
            lines.append(retries_line(self.emulator_retries))
        for f in self.failures[:10]:
            lines.append("FAIL " + f.replay_hint())
        if len(self.failures) > 10:
            lines.append(f"... and {len(self.failures) - 10} more failures")
        return "\n".join(lines)


def retries_line(retries: Sequence[dict]) -> str:
    """The table's line on emulator retries: how many boots were re-run, and why."""
    if not retries:
        return "emulator retries: 0"
    why: dict[str, int] = {}
    for r in retries:
        why[r["reason"]] = why.get(r["reason"], 0) + 1
    return (f"emulator retries: {len(retries)} (a boot the emulator failed, re-run from the same NVM image): "
            + "; ".join(f"{n} x {reason}" for reason, n in why.items()))
