"""Emulated power-failure campaign: the checkpointing runtime + model as firmware on a QEMU board whose
NVM is PSRAM backed by a file (docs/DESIGN.md 7 (B)), power cut after exactly N instructions by the boards'
instruction-count plugin (`limit=N`, docs/DESIGN.md 7 (C)). A cut is exact and reproducible: the same NVM image
and the same N give the same boot, so a failing cut is printed with its N.

The firmware (firmware_templates/runtime/powerfail_main.c) reads what to run from a mailbox page at the end
of the PSRAM, written here before each boot, and has its inputs baked in, so no host timing enters a boot.
Its NVM layer checks every NVMC rule (alignment, writes that only clear bits, at most nWRITE writes of a word
between erases: a violation ends the boot with a FAULT, a crash of the campaign) and keeps the emulated
flash's erase counters and event log in the PSRAM file (nvm_events.py: when each erase and write happened,
wear, lifetime). The board's kernel variant is used (`Board.kernels`: the Cortex-M4 kernels on the
nRF52840 and mps2-an386), as `tinyexit bench` does.

An emulator hiccup is never taken for a result or a failure of the firmware: a boot whose outcome the
firmware cannot produce (status 0 without its RESULT line, no instruction count from the plugin, QEMU killed
by a signal, no end within the timeout) is re-run from the same NVM image and mailbox, which gives the same
boot (the emulation is deterministic), at most ATTEMPTS times in all. Each re-run is kept in
EmulatedTarget.retries and in the campaign report (emulator_retries); a boot that fails every attempt is an
EmulatorError, or in a campaign a failure of kind "emulator" (not a crash of the firmware)."""
from __future__ import annotations

import random
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tinyexit import toolchain
from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots
from tinyexit.intermittent.campaign import BootResult, ResultJudge, drive
from tinyexit.intermittent.nvm_events import (MAILBOX_OFFSET, NVM_LIMIT, PSRAM_BASE, PSRAM_SIZE, SHADOW_OFFSET,
                                              ERASES, WRITES, checkpoint_overhead, nvm_defines,  # noqa: F401
                                              read_events, reset_shadow)
from tinyexit.intermittent.report import EmulatedReport, Failure
from tinyexit.intermittent.host import BROKEN_FLAGS, RUNTIME_DIR, Granularity, render_pipeline
from tinyexit.pipeline import Pipeline
from tinyexit.targets import FirmwareTimeoutError, RunResult

MAILBOX_BYTES = 4096           # the mailbox page (the last of the PSRAM, outside the NVM)
MAILBOX_MAGIC = 0x424D5854
NO_THRESHOLD = 0x7FFFFFFF
NEVER = 0xFFFFFFFF              # warn_at_instruction: no warning
FIRMWARE_SOURCES = ("tx_checkpoint.c", "tx_crc32.c", "tx_pipeline.c", "tx_nvm_board.c", "powerfail_main.c")
ATTEMPTS = 3                   # runs of one boot at most, when the emulator fails it (see the module's note)
RESULT_LINE = re.compile(r"^RESULT .*hex=[0-9a-f]*\r?$", re.M)   # the delivery line, before exit(0)
DELIVERY = re.compile(r"^RESULT input=(\d+) exit=(\d+) boot=(\w+) size=(\d+) hex=([0-9a-f]*)\r?\n", re.M)


class EmulatorError(TinyexitError):
    """QEMU failed the same boot on every attempt: the boot has no result (neither success nor failure)."""


def _kv(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)


def build_emulated(lib_dir: str | Path, pipeline: Pipeline, inputs: Sequence[bytes], board, out_dir: str | Path,
                   *, broken: Sequence[str] = (), slots: int | str = 2, defer_results: bool = False):
    """Cross-compiles runtime + model + baked inputs + the campaign main for `board` (emulated variant).
    `slots`: checkpoint slots in a ring (>= 2), or "fit": the whole NVM region (a log when it holds three of the
    largest records, else as many slots as fit; tx_checkpoint.h). `defer_results`: just-in-time granularities
    keep a delivered result in RAM until the power warning (TX_CKPT_DEFER_RESULTS; the firmware's boot ends with
    the warning)."""
    from tinyexit.boards import load_board
    from tinyexit.build import build_firmware
    board = load_board(board, emulate=True) if isinstance(board, str) else board
    if not (PSRAM_BASE <= board.nvm.origin and board.nvm.end <= PSRAM_BASE + NVM_LIMIT):
        raise TinyexitError(
            f"board {board.name}: its emulated NVM ({board.nvm.driver} at 0x{board.nvm.origin:08x}) is not in "
            f"QEMU's PSRAM (0x{PSRAM_BASE:08x}), so it cannot be backed by a file and would not survive a cut. "
            f"Use --board mps2-an386 (NVM in file-backed PSRAM), or give the board's qemu section an NVM in the "
            f"first {NVM_LIMIT >> 20} MiB of the PSRAM.")
    lib_dir, out_dir = Path(lib_dir), Path(out_dir)
    gen = out_dir / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    render_pipeline(pipeline, gen)
    size = len(inputs[0])
    if any(len(x) != size for x in inputs):
        raise TinyexitError("all inputs of a campaign must have the same size")
    rows = [", ".join(str(b - 256 if b > 127 else b) for b in x) + "," for x in inputs]
    (gen / "tx_pf_inputs.c").write_text(toolchain.render("runtime/powerfail_inputs.c.j2", trim_blocks=False,
                                                         inputs=rows, input_size=size))
    sources = [RUNTIME_DIR / s for s in FIRMWARE_SOURCES] + [gen / "tx_pipeline_config.c", gen / "tx_pf_inputs.c"]
    sources += sorted(p for p in lib_dir.glob("*.c") if p.name != "host_main.c")
    defines = nvm_defines(board)
    defines.update({BROKEN_FLAGS[b]: 1 for b in broken})
    if defer_results:
        defines["TX_CKPT_DEFER_RESULTS"] = 1
    if slots == "fit":
        defines["TX_CKPT_SLOTS"] = "0u"      # the runtime uses the whole NVM
    elif slots != 2:
        if not isinstance(slots, int) or slots < 2:
            raise TinyexitError(f"slots must be at least 2, or 'fit' (got {slots!r})")
        defines["TX_CKPT_SLOTS"] = f"{slots}u"
    return build_firmware(board, sources, out_dir / "fw", include_dirs=[RUNTIME_DIR, lib_dir, gen], defines=defines,
                          name="powerfail", emulate=True)



@dataclass
class EBoot:
    exit_code: int | None
    cut: bool
    instructions: int              # executed by this boot (the limit when cut)
    window_instructions: int = 0   # inside the measured inference (init + boot + run)
    window_cycles: int = 0         # estimated Cortex-M4 cycles of the same window (the plugin's estimate)
    boot: str = ""
    commits: int = 0
    nvm_bytes: int = 0
    nvm_used: int = 0
    slots: int = 2
    log: bool = False              # the slots are the pages of a log (TX_CKPT_SLOTS 0)
    units: int = 0
    commit_ticks: list[tuple[int, int]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)   # the TXSTAT line (jit_commits, erases, prepared, skipped, ...)
    exit_index: int | None = None
    output: bytes | None = None
    text: str = ""


RUNNER_NEEDS = ("exact_cuts", "instruction_windows", "memory_file")   # what a campaign asks of its runner


class EmulatedTarget:
    """A built campaign firmware plus the PSRAM image file that holds its NVM, run by the board's runner (or
    `runner`), which must cut after exact instruction counts and back the PSRAM with the file (RUNNER_NEEDS)."""

    def __init__(self, firmware, psram_path: str | Path, runner: str | None = None):
        from tinyexit.targets import get_runner
        self.fw = firmware
        self.board = firmware.board
        self.runner = get_runner(self.board, runner, needs=RUNNER_NEEDS)
        self.psram = Path(psram_path)
        self.nvm_offset = self.board.nvm.origin - PSRAM_BASE
        self.nvm_size = self.board.nvm.size
        if not self.psram.exists() or self.psram.stat().st_size != PSRAM_SIZE:
            with open(self.psram, "wb") as f:
                f.truncate(PSRAM_SIZE)
        self.window = (self._symbol("tx_pf_begin"), self._symbol("tx_pf_end"))
        self.slot_size: int | None = None     # known after the first complete boot
        self.tick_origin: int | None = None   # instructions executed before SysTick starts (see calibrate)
        self.num_slots = 2
        self.log = False                      # the NVM is a log (TX_CKPT_SLOTS 0)
        self.fingerprint: int | None = None   # the pipeline's fingerprint (packed records' CRC seed), from TXSTAT
        self.attempts = ATTEMPTS
        self.retries: list[dict] = []         # boots re-run after an emulator hiccup: {"boot", "attempt", "reason"}

    def _symbol(self, name: str) -> int:
        return toolchain.symbol_address(self.fw.elf, name)

    def _write(self, offset: int, data: bytes) -> None:
        with open(self.psram, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def erase_nvm(self) -> None:
        """A fresh flash: every page erased, erase counters and write counts zero (nvm_events.reset_shadow)."""
        self._write(self.nvm_offset, b"\xff" * self.nvm_size)
        reset_shadow(self.psram)

    def nvm_image(self) -> bytes:
        return self._read(self.nvm_offset, self.nvm_size)

    def set_nvm_image(self, image: bytes) -> None:
        """The NVM as `image`; each word's writes since its erase are unknown then, and counted from zero."""
        self._write(self.nvm_offset, image)
        self._write(SHADOW_OFFSET + WRITES, bytes(self.nvm_size // 4))

    def snapshot(self) -> tuple[bytes, bytes]:
        """The NVM and the emulated flash's counters (erases per page, each word's writes since its erase: the
        NVMC's nWRITE state), for restore()."""
        return self.nvm_image(), self._read(SHADOW_OFFSET + ERASES, WRITES - ERASES + self.nvm_size // 4)

    def restore(self, snap: tuple[bytes, bytes]) -> None:
        self._write(self.nvm_offset, snap[0])
        self._write(SHADOW_OFFSET + ERASES, snap[1])

    def mailbox(self, input_index: int, input_id: int, granularity: Granularity, *, low_energy_units: int | None = None,
                threshold: int | None = None, warn_at_instruction: int | None = None, count: int = 1,
                warmup_id: int | None = None) -> None:
        """What the next boots run (powerfail_main.c's mailbox_t): `count` inferences one after the other (input
        ids input_id, input_id + 1, ...: continuous power), after one of id `warmup_id` when given (its result
        dropped: the boot's next commits pack after it). `warn_at_instruction`: the power-fail warning
        (tx_hal_power_warning) holds from that instruction count of the boot on (from reset, SysTick x
        instructions per tick + tick_origin, as nvm_events counts; calibrates first when needed)."""
        if warn_at_instruction is not None and self.tick_origin is None:   # a whole boot: NVM restored after it
            self.mailbox(input_index, input_id, granularity, low_energy_units=low_energy_units, threshold=threshold)
            snap = self.snapshot()
            self.calibrate()
            self.restore(snap)
        low = getattr(threshold, "low", None)   # branch_checks.Threshold: low energy's own threshold
        words = struct.pack("<6Ii4Ii", MAILBOX_MAGIC, input_index, input_id,
                            0xFFFFFFFF if low_energy_units is None else low_energy_units,
                            granularity.c_mode, granularity.every, NO_THRESHOLD if threshold is None else threshold,
                            NEVER if warn_at_instruction is None else min(int(warn_at_instruction), NEVER),
                            self.tick_origin or 0, count, NEVER if warmup_id is None else warmup_id,
                            NO_THRESHOLD if low is None else low)
        self._write(MAILBOX_OFFSET, words)

    def calibrate(self) -> int:
        """Instructions from reset to main (the startup code), counted by the plugin: SysTick starts at the
        top of main, so the commit marks (ticks x instructions per tick) plus this give instruction counts."""
        self.tick_origin = self.boot(window=(self._symbol("Reset_Handler"), self._symbol("main"))).window_instructions
        return self.tick_origin

    def commit_windows(self, b: "EBoot") -> list[tuple[int, int]]:
        """Instruction-count ranges of boot b's commits (from its SysTick marks; +- one tick)."""
        ipt = self.board.instructions_per_tick or 40
        origin = self.tick_origin or 0
        return [(origin + int(t0 * ipt), origin + int((t1 + 1) * ipt)) for t0, t1 in b.commit_ticks]

    def uninterrupted(self, input_index: int, input_id: int, granularity: Granularity, *,
                      threshold: int | None = None, low_energy_units: int | None = None,
                      warn_at_instruction: int | None = None) -> "EBoot":
        """One inference without a cut, from a blank NVM; an error when it does not end with a result."""
        self.erase_nvm()
        self.mailbox(input_index, input_id, granularity, low_energy_units=low_energy_units, threshold=threshold,
                     warn_at_instruction=warn_at_instruction)
        b = self.boot()
        if b.exit_code != 0 or b.output is None:
            hint = ""
            if "NVM is too small" in b.text:
                hint = (f"\nFix: give board {self.board.name} a larger NVM region (its board file, or "
                        f"--nvm-region), or checkpoint a smaller model.")
            raise TinyexitError(f"the uninterrupted emulated run ({granularity}) failed (status {b.exit_code}):\n"
                                f"{b.text[-500:]}{hint}")
        return b

    def boot(self, limit: int | None = None, timeout: float = 120.0, window: tuple[int, int] | None = None) -> EBoot:
        """One boot from the NVM image and mailbox in the PSRAM file: to its end, or cut after `limit`
        instructions. Re-run from the same image when the emulator failed it (hiccup); EmulatorError when it
        failed every one of self.attempts runs."""
        what = "uncut boot" if limit is None else f"boot cut at limit={limit}"
        start = self.snapshot()   # the mailbox is only read by the firmware
        reasons = []
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self.restore(start)   # the failed run may have written the NVM
            self._write(SHADOW_OFFSET + 4, bytes(4))   # the event log holds this boot's events (tx_nvm_emu.h)
            try:
                r = self.runner.run(self.fw.elf, timeout=timeout, count_insns=True, limit=limit,
                                    window=window or self.window, memory_file=(self.psram, PSRAM_SIZE), check=False)
                reason = hiccup(r, limit)
            except FirmwareTimeoutError:
                r, reason = None, f"QEMU did not end the boot within {timeout:g} s (stopped)"
            if reason is None:
                return self._parse(r, limit)
            reasons.append(reason)
            if attempt < self.attempts:
                self.retries.append({"boot": what, "attempt": attempt + 1, "reason": reason})
        raise EmulatorError(
            f"QEMU failed the same {what} of {self.fw.elf.name} on all {self.attempts} attempts (each from the "
            f"same NVM image): {'; '.join(dict.fromkeys(reasons))}. The boot has no result. A deterministic "
            f"boot that never ends is a hang of the firmware (replay it with its limits); otherwise check the "
            f"emulator (qemu-system-arm --version, the machine's load) and run the campaign again.")

    def _read(self, offset: int, size: int) -> bytes:
        with open(self.psram, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def _parse(self, r: RunResult, limit: int | None) -> EBoot:
        counts = r.insns
        cut = limit is not None and counts is not None and counts.limit_reached is not None
        b = EBoot(exit_code=r.exit_code, cut=cut, instructions=counts.total if counts else 0,
                  window_instructions=counts.window_insns if counts else 0,
                  window_cycles=counts.window_cycles if counts else 0, text=r.output)
        # A cut boot may stop in the middle of a line: only a boot that ended by itself is parsed.
        for line in ([] if cut else r.lines):
            kv = _kv(line)
            if line.startswith("TXBOOT"):
                b.boot = kv.get("boot", "")
            elif line.startswith("TXSTAT"):
                b.commits, b.nvm_bytes = int(kv["commits"]), int(kv["nvm_bytes"])
                b.units, b.nvm_used, b.slots = int(kv["units"]), int(kv["nvm_used"]), int(kv["slots"])
                b.log = bool(int(kv.get("log", 0)))
                b.stats = {k: int(v) for k, v in kv.items()}
            elif line.startswith("TXCOMMITS"):
                b.commit_ticks = [(int(a), int(c)) for a, c in re.findall(r"(\d+)-(\d+),", line)]
            elif line.startswith("RESULT"):
                b.exit_index = int(kv["exit"])
                b.output = bytes.fromhex(kv["hex"])
        if "fp" in b.stats:   # the last complete boot's (it follows the policy the mailbox sets)
            self.fingerprint = b.stats["fp"]
        if b.nvm_used and self.slot_size is None:
            self.num_slots, self.log = b.slots, b.log
            self.slot_size = b.nvm_used // b.slots
        return b


def hiccup(r: RunResult, limit: int | None) -> str | None:
    """Why run `r` of the campaign firmware is not an outcome the firmware can produce (None when it is one):
    the plugin prints its count line whenever QEMU ends by itself, QEMU ends by a signal only when killed or
    crashed, and the firmware exits with status 0 only right after printing its RESULT line."""
    if r.exit_code is None or r.exit_code < 0:
        return f"QEMU was killed by signal {-(r.exit_code or 0)}"
    if r.insns is None:
        return f"QEMU ended with status {r.exit_code} without the instruction-count plugin's line"
    cut = limit is not None and r.insns.limit_reached is not None
    if not cut and r.exit_code == 0 and not RESULT_LINE.search(r.output):
        return (f"QEMU ended with status 0 but the UART gave {len(r.output)} bytes without the RESULT line "
                f"the firmware prints before it exits with 0")
    return None


def _changed_and_torn(before: bytes, after: bytes, slot_size: int, num_slots: int) -> bool:
    """True when a slot changed during the boot and is not valid now: the cut landed inside a commit."""
    for s in range(num_slots):
        a, b = before[s * slot_size:(s + 1) * slot_size], after[s * slot_size:(s + 1) * slot_size]
        if a != b and slots.read_slot(after, s, slot_size) is None:
            return True
    return False


def _mark_changed(before: bytes, after: bytes, slot_size: int, num_slots: int) -> bool:
    """True when a slot's LOW_MARK word changed during the boot (it lies outside the CRC)."""
    off = slots.LOW_MARK_WORD * 4
    return any(before[s * slot_size + off: s * slot_size + off + 4] != after[s * slot_size + off: s * slot_size + off + 4]
               for s in range(num_slots))


class EmulatedCuts:
    """Emulated backend: the plugin cuts the boot after exactly N instructions; half the cuts are aimed inside a
    checkpoint commit of this very boot (found by a probe boot without a cut from the same NVM image, whose
    SysTick marks give the commits' instruction ranges; the image is restored after it). What each boot runs
    (input, inference id, low-energy point) goes through the mailbox."""

    def __init__(self, target: EmulatedTarget, granularity: Granularity, threshold: int | None = None,
                 warn: float = 0.0, warmup: bool = False):
        """warn > 0 (just-in-time granularities): every cut boot gets the power-fail warning at a random instruction
        and its cut after it (half in a commit after it: the JIT commit); others are warned with probability warn.
        warmup (granularity none): every boot first runs an inference of its own id, so that the result record of
        the campaign's inference is packed after that one's inside a page (cuts land in both commits)."""
        if warmup and (granularity.mode != "none" or granularity.jit):
            raise TinyexitError("a warm-up inference per boot is for granularity none (it would end a resume)")
        self.target, self.granularity, self.threshold, self.warn = target, granularity, threshold, warn
        self.warmup, self.boots = warmup, 0
        self.deliveries: dict[int, int] = {}   # results delivered (RESULT lines of computed results) per input id
        self.not_durable = 0                    # cut boots that delivered a result the NVM did not hold after the cut
        self.promise_broken: list[str] = []     # ... although its deferred commit had ended (must stay empty)
        self.probe_boots = 0
        self.since = len(target.retries)   # the campaign's retries: those from here on

    def retries(self) -> list[dict]:
        return list(self.target.retries[self.since:])

    def _draw_limit(self, rng: random.Random, span: Mapping[str, int], before: tuple[bytes, bytes],
                    warn: int | None = None) -> int:
        """Half the cuts inside a commit of this boot (found by a probe boot, NVM restored after; with a warning
        the first or the last commit that ends after it), the others uniform over the boot (after the warning)."""
        t = self.target
        if rng.random() < 0.5:
            probe = t.boot()
            self.probe_boots += 1
            t.restore(before)
            wins = t.commit_windows(probe) if probe.exit_code == 0 else []
            if warn is not None:   # the first commit after it (the JIT one) or the last (the result, maybe deferred)
                wins = [w for w in wins if w[1] >= warn][:1] + [w for w in wins if w[1] >= warn][-1:]
            if wins:
                lo, hi = rng.choice(wins)
                return rng.randint(max(1, lo), max(1, hi))
        return rng.randint(warn or 1, max(warn or 1, span["insns"]))

    def erase_nvm(self) -> None:
        self.target.erase_nvm()

    def nvm_image(self) -> bytes:
        return self.target.nvm_image()

    def newest(self) -> slots.SlotRecord | None:
        t = self.target
        return slots.newest_valid(t.nvm_image(), t.slot_size, t.num_slots, t.log, t.fingerprint)

    def boot(self, input_index: int, input_id: int, rng: random.Random, cutting: bool,
             draw_low: Callable[[], int | None], span: Mapping[str, int]) -> BootResult:
        t = self.target
        low = draw_low()
        warn = rng.randint(1, span["insns"]) if self.warn and (cutting or rng.random() < self.warn) else None
        self.boots += 1
        t.mailbox(input_index, input_id, self.granularity, low_energy_units=low, threshold=self.threshold,
                  warn_at_instruction=warn, warmup_id=0x40000000 + self.boots if self.warmup else None)
        snap = t.snapshot()
        before = snap[0]
        limit = None
        try:
            if cutting:
                limit = self._draw_limit(rng, span, snap, warn)
            b = t.boot(limit=limit)
        except EmulatorError as e:
            return BootResult(None if limit is None else ("insns", limit), low, False, False, None, None, None, 0,
                              error=str(e))
        in_commit = False
        self._delivery(b, input_id)
        if b.cut:   # inside a commit: its begin mark is the boot's last (the event log), or a slot is torn
            after = t.nvm_image()
            marks = [e.kind for e in read_events(t.psram, tick_origin=0, instructions_per_tick=1)
                     if e.kind in ("commit_begin", "commit_end")]
            in_commit = marks[-1:] == ["commit_begin"] or (not t.log and (
                _changed_and_torn(before, after, t.slot_size, t.num_slots) or
                _mark_changed(before, after, t.slot_size, t.num_slots)))
        # the board's unit count is not known after a cut: the signal counts as possibly seen
        return BootResult(None if limit is None else ("insns", limit), low, b.cut, in_commit, b.exit_code,
                          b.exit_index, b.output, b.instructions, b.text, low, warn=warn)


    def _delivery(self, b: "EBoot", input_id: int) -> None:
        """Counts a delivered result (a whole RESULT line of a computed one: boot=done re-reads a durable result)
        and, for a cut boot, whether the NVM holds it: a deferred result may be delivered before its commit."""
        m = DELIVERY.search(b.text)
        if m is None or m.group(3) == "done" or len(m.group(5)) != 2 * int(m.group(4)):
            return
        self.deliveries[input_id] = self.deliveries.get(input_id, 0) + 1
        if not b.cut:
            return
        rec = self.newest()
        if rec is not None and rec.done and rec.input_id == input_id:
            return
        self.not_durable += 1
        kinds = [e.kind for e in read_events(self.target.psram, tick_origin=0, instructions_per_tick=1)]
        last = max((k for k, e in enumerate(kinds) if e == "result"), default=len(kinds))
        if "commit_end" in kinds[last:]:
            self.promise_broken.append(f"input id {input_id}: delivered, its deferred commit ended, not in the NVM")

    @property
    def duplicate_deliveries(self) -> int:
        return sum(n - 1 for n in self.deliveries.values() if n > 1)


def run_emulated_campaign(target: EmulatedTarget, num_inputs: int, *, cuts: int, seed: int = 0,
                          granularity: Granularity = Granularity(), threshold: int | None = None,
                          max_cuts_per_inference: int = 4, max_boots_per_inference: int = 200,
                          work_dir: str | Path | None = None, inputs: Sequence[bytes] | None = None,
                          reference=None, warn: float = 0.0, warmup: bool = False) -> EmulatedReport:
    """Like campaign.run_campaign, with cuts after exactly N instructions: half uniform over the boot, half
    aimed inside a checkpoint commit of this very boot (EmulatedCuts; `warmup`: see there)."""
    rng = random.Random(seed)
    report = EmulatedReport(granularity=str(granularity), seed=seed, inputs=num_inputs, board=target.board.name)
    backend = EmulatedCuts(target, granularity, threshold, warn, warmup)   # its retries from here on: the report's
    target.erase_nvm()
    target.mailbox(0, 0xFFFF0000, granularity, threshold=threshold)
    target.calibrate()
    oracles = []
    for j in range(num_inputs):
        o, base = (target.uninterrupted(j, 0xFFFF0000 + j, g, threshold=threshold)
                   for g in (granularity, Granularity("none")))
        if (o.exit_index, o.output) != (base.exit_index, base.output):
            report.failures.append(Failure("oracle-mismatch", -1, j, "checkpointing changed the result"))
        if reference is not None and inputs is not None:
            ref = reference(inputs[j])
            report.reference_checked += 1
            if o.exit_index >= len(ref) or bytes(ref[o.exit_index]) != o.output:
                report.failures.append(Failure("oracle-mismatch", -1, j, f"the board's uninterrupted run gives exit "
                                               f"{o.exit_index} {o.output.hex()}, the reference differs"))
        oracles.append(o)
        report.instructions_per_inference += o.window_instructions / num_inputs
        report.instructions_per_inference_baseline += base.window_instructions / num_inputs
        report.cycles_per_inference += o.window_cycles / num_inputs
        report.cycles_per_inference_baseline += base.window_cycles / num_inputs
        report.units_per_inference += o.units / num_inputs
        report.nvm_bytes_per_inference += o.nvm_bytes / num_inputs
        report.commits_per_inference += o.commits / num_inputs
        report.nvm_bytes_per_inference_baseline += base.nvm_bytes / num_inputs
    report.nvm_bytes_used = oracles[0].nvm_used
    report.slots = target.num_slots
    keep = Path(work_dir) if work_dir else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    def rework(j: int, spent: int) -> None:
        report.reexecuted_instructions += max(0, spent - oracles[j].instructions)

    t0 = time.monotonic()
    drive(backend, ResultJudge(report, [(o.exit_index, o.output) for o in oracles], rework=rework), report,
          [{"insns": o.instructions} for o in oracles], cuts=cuts, rng=rng,
          max_cuts_per_inference=max_cuts_per_inference, max_boots_per_inference=max_boots_per_inference, keep=keep)
    report.seconds = time.monotonic() - t0
    report.probe_boots = backend.probe_boots
    report.deliveries = sum(backend.deliveries.values())
    report.duplicate_deliveries = backend.duplicate_deliveries
    report.delivered_not_durable = backend.not_durable
    for detail in backend.promise_broken:
        report.failures.append(Failure("lost-result", -1, -1, detail))
    return report


def replay_emulated(target: EmulatedTarget, failure: Failure, input_index: int, granularity: Granularity, *,
                    threshold: int | None = None) -> EBoot:
    """Re-runs a failed emulated inference exactly (same NVM image, same instruction limits, then a boot
    without a limit); input_index = the failure's inference number modulo the number of inputs."""
    if not failure.nvm_at_start:
        raise TinyexitError("this failure kept no NVM image; run the campaign with a work folder to replay it")
    target.set_nvm_image(Path(failure.nvm_at_start).read_bytes())
    warns = list(failure.warnings) + [None] * (len(failure.cuts) + 1)   # the power-fail warning of each boot
    for n, limit in enumerate([c[1] for c in failure.cuts] + [None]):
        target.mailbox(input_index, failure.input_id, granularity, threshold=threshold, warn_at_instruction=warns[n])
        b = target.boot(limit=limit)
    return b
