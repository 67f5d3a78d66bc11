"""What a power-failure campaign reports: the uninterrupted run of an input (Oracle), a failing cut with what is
needed to replay it (Failure), and the campaign's figures (CampaignReport), shared by every campaign; the
emulated campaign's (EmulatedReport) adds instructions, wall time and flash wear."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from tinyexit.intermittent.nvm_events import FlashWear, NvmTrace


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
    warnings: list = field(default_factory=list)     # per boot: the power-fail warning (units / instructions) or None

    def replay_hint(self) -> str:
        names = {"events": "TX_CUT_EVENTS", "units": "TX_CUT_UNITS", "insns": "limit"}
        seq = " ".join(f"{names.get(k, k)}={n}" for k, n in self.cuts)
        low = ("; low energy per boot after units: " + " ".join("-" if u is None else str(u) for u in self.low_energy)
               if any(u is not None for u in self.low_energy) else "")
        low += ("; power-fail warning per boot at: " + " ".join("-" if u is None else str(u) for u in self.warnings)
                if any(u is not None for u in self.warnings) else "")
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
    jit_commits: int = 0            # just-in-time commits in the boots that completed (host campaigns with warnings)
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


@dataclass
class EmulatedReport(CampaignReport):
    board: str = ""
    reexecuted_instructions: int = 0
    probe_boots: int = 0                           # uncut boots that located commits (NVM restored after)
    instructions_per_inference: float = 0.0        # uninterrupted, this granularity (whole inference window)
    instructions_per_inference_baseline: float = 0.0   # granularity 'none'
    cycles_per_inference: float = 0.0              # estimated Cortex-M4 cycles of the same windows (zero wait
    cycles_per_inference_baseline: float = 0.0     # states, no flash wait states; the emulated NVM's own work in)
    kernels: str = ""                              # the library's kernel variant (the board's)
    seconds: float = 0.0                           # wall time of the campaign's cuts (oracles and wear excluded;
    #                                                sharded: added over the shards, i.e. worker time)
    wall_seconds: float = 0.0                      # wall time of the whole campaign, all shards (fan-out included)
    wear: FlashWear | None = None                  # page erases over a turn of the slot ring (nvm_events.py)
    rate_hz: float = 1.0                           # inference rate the lifetime is stated at
    # of the instructions per inference, those inside NVM erases and writes (emulated driver, NVMC rule checks,
    # shadow; nvm_events.nvm_op_instructions): a real NVMC does that work while the CPU waits
    nvm_op_instructions_per_inference: float = 0.0
    nvm_op_instructions_per_inference_baseline: float = 0.0
    nvm_seconds_per_inference: float | None = None   # NVMC busy time of an uninterrupted inference (board timing)
    nvm_trace: NvmTrace | None = None              # the NVM events of input 0's uninterrupted inference
    # delivered results (RESULT lines of computed results, also of cut boots), re-deliveries of an input's result
    # (a cut between a delivery and its record's end: deferred results, tx_checkpoint.h), and those cuts
    deliveries: int = 0
    duplicate_deliveries: int = 0
    delivered_not_durable: int = 0

    @property
    def mean_reexecuted_instructions_per_cut(self) -> float:
        return self.reexecuted_instructions / self.cuts if self.cuts else 0.0

    @property
    def cpu_instructions(self) -> tuple[float, float]:
        """Instructions per inference outside NVM operations, with checkpoints and without (granularity none)."""
        return (self.instructions_per_inference - self.nvm_op_instructions_per_inference,
                self.instructions_per_inference_baseline - self.nvm_op_instructions_per_inference_baseline)

    def as_dict(self) -> dict:
        d = super().as_dict()
        d["mean_reexecuted_instructions_per_cut"] = self.mean_reexecuted_instructions_per_cut
        base = self.instructions_per_inference_baseline
        d["checkpoint_overhead_instructions"] = self.instructions_per_inference - base
        d["checkpoint_overhead_percent"] = 100.0 * d["checkpoint_overhead_instructions"] / base if base else 0.0
        d["seconds_per_cut"] = self.seconds / self.cuts if self.cuts else 0.0
        cpu, cpu_base = self.cpu_instructions
        d["cpu_instructions_per_inference"], d["cpu_instructions_per_inference_baseline"] = cpu, cpu_base
        d["cpu_checkpoint_overhead_percent"] = 100.0 * (cpu - cpu_base) / cpu_base if cpu_base else 0.0
        d["wrong"] = self.wrong_results
        d.pop("wear", None)
        d["nvm_trace"] = self.nvm_trace.as_dict() if self.nvm_trace is not None else None
        if self.wear is not None:
            d.update(self.wear.as_dict(self.rate_hz))
            d["flash_erases_per_page"] = self.wear.erases_per_page
        return d

    def table(self) -> str:
        base = self.instructions_per_inference_baseline
        over = self.instructions_per_inference - base
        extra = (f"\ninstructions per inference (continuous power): {self.instructions_per_inference:,.0f}, without "
                 f"checkpoints {base:,.0f}: overhead {over:,.0f} ({100.0 * over / base if base else 0:.2f} %)"
                 f"\nestimated cycles per inference (no flash wait states): {self.cycles_per_inference:,.0f}, "
                 f"without checkpoints {self.cycles_per_inference_baseline:,.0f}"
                 f"\nre-executed instructions: {self.mean_reexecuted_instructions_per_cut:,.0f} per cut; wall time "
                 f"{self.seconds / max(1, self.cuts):.2f} s per cut")
        cpu, cpu_base = self.cpu_instructions
        extra += (f"\noutside NVM erases and writes (what the CPU runs on a real NVMC): {cpu:,.0f}, without "
                  f"checkpoints {cpu_base:,.0f}: overhead {cpu - cpu_base:,.0f} "
                  f"({100.0 * (cpu - cpu_base) / cpu_base if cpu_base else 0:.2f} %)")
        if self.nvm_seconds_per_inference is not None:
            extra += f"; NVMC busy {1e3 * self.nvm_seconds_per_inference:,.1f} ms per inference (board timing)"
        if self.wear is not None:
            extra += "\n" + self.wear.line(self.rate_hz)
        if self.delivered_not_durable or self.duplicate_deliveries:
            extra += (f"\ndeliveries {self.deliveries}: {self.delivered_not_durable} cut between a delivery and its "
                      f"record's end, {self.duplicate_deliveries} delivered again (at least once; exactly once "
                      "when every cut leaves the deferred commit its time: just in time's contract)")
        lines = [ln for ln in super().table().splitlines() if not ln.startswith("re-executed work:")]
        fails = [ln for ln in lines if ln.startswith(("FAIL", "..."))]
        body = [ln for ln in lines if ln not in fails]
        return "\n".join([f"board {self.board} (emulated, cuts after exact instruction counts; {self.kernels} "
                           "kernels)", *body,
                          extra.strip("\n"), *fails])
