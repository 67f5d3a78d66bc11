"""The emulated board's flash, as the firmware's NVM layer records it: when each page erase and word write
happened (NvmEvent, for an energy model that charges their time), how often each page was erased (wear), and
the flash lifetime that follows.

The campaign firmware built with TX_NVM_EMU_SHADOW (firmware_templates/runtime/tx_nvm_emu.h) keeps, in QEMU's
file-backed PSRAM outside the NVM, an erase counter per page, a write counter per word (the NVMC's nWRITE
rule) and a log of its NVM operations and commit marks stamped with SysTick. Under `-icount shift=0` one tick
is exactly `instructions_per_tick` instructions and SysTick starts at the top of main, so an event's
instruction count (from reset) is `tick_origin + ticks x instructions_per_tick`, to within one tick
(`NvmTrace.resolution`). This module reads that memory from the PSRAM file; the campaign
(tinyexit/intermittent/emulated.py) runs the boots.

    trace = nvm_trace(target, input_index=0, granularity=Granularity.parse("layer"))   # one uninterrupted boot
    trace.events            [NvmEvent(instructions, kind, offset, nwords), ...] in order
    trace.nvm_seconds()     erase and write time the board file gives (tERASEPAGE, tWRITE)
    wear = measure_wear(target, Granularity.parse("layer"))   # consecutive inferences over the slot ring
    wear.lifetime_years(rate_hz=1.0)
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tinyexit import toolchain
from tinyexit.errors import TinyexitError

PSRAM_BASE = 0x21000000        # mps2-an386 PSRAM, 16 MiB: QEMU's machine RAM, which memory-backend replaces
PSRAM_SIZE = 16 * 1024 * 1024
NVM_LIMIT = 8 * 1024 * 1024    # the NVM lies in the first half of the PSRAM
SHADOW_OFFSET = 8 * 1024 * 1024             # tx_nvm_emu.h's TX_NVM_EMU_SHADOW = PSRAM_BASE + this
MAILBOX_OFFSET = PSRAM_SIZE - 4096          # powerfail_main.c's TX_PF_MAILBOX = PSRAM_BASE + this
# layout inside the shadow (tx_nvm_emu.h)
MAGIC = 0x45564E54
ERASES, MAX_PAGES, WRITES, LOG = 0x1000, 2048, 0x3000, 0x203000
EVENT_BYTES = 16
LOG_CAPACITY = (MAILBOX_OFFSET - SHADOW_OFFSET - LOG) // EVENT_BYTES
KINDS = {1: "erase", 2: "write", 3: "commit_begin", 4: "commit_end", 5: "result", 6: "mark"}
SECONDS_PER_YEAR = 365.25 * 24 * 3600


@dataclass(frozen=True)
class NvmEvent:
    """One NVM operation or mark of a boot, in order.
    instructions: executed from reset when it began (to within NvmTrace.resolution);
    kind: erase | write | commit_begin | commit_end | result;
    offset: NVM byte offset of the erased page or of the first word written (result: the exit index);
    nwords: words written (write), the output size (result), else 0."""
    instructions: int
    kind: str
    offset: int = 0
    nwords: int = 0


@dataclass
class NvmTrace:
    """The NVM events of one boot with the board's flash figures (from its board file; None when it gives
    none, e.g. a RAM NVM): what an energy model needs to charge the NVMC's time."""
    events: list[NvmEvent]
    instructions: int                # executed by the whole boot
    resolution: int                  # an event's instruction count is exact to within this many instructions
    page_size: int = 4096
    erase_page_s: float | None = None
    write_word_s: float | None = None
    clock_hz: int = 0

    @property
    def erases(self) -> int:
        return sum(e.kind == "erase" for e in self.events)

    @property
    def words_written(self) -> int:
        return sum(e.nwords for e in self.events if e.kind == "write")

    def nvm_seconds(self) -> float:
        """Time the NVMC is busy in this boot (page erases x tERASEPAGE + words x tWRITE); the CPU waits."""
        if self.erase_page_s is None or self.write_word_s is None:
            raise TinyexitError("the board file gives no NVM timing (memory.nvm erase_page_s, write_word_s)")
        return self.erases * self.erase_page_s + self.words_written * self.write_word_s

    def as_dict(self) -> dict:
        return {"instructions": self.instructions, "resolution": self.resolution, "erases": self.erases,
                "words_written": self.words_written, "erase_page_s": self.erase_page_s,
                "write_word_s": self.write_word_s, "clock_hz": self.clock_hz,
                "events": [[e.instructions, e.kind, e.offset, e.nwords] for e in self.events]}


@dataclass
class FlashWear:
    """Page erases per inference, measured over `inferences` consecutive uninterrupted inferences (one full turn
    of the slot ring, so every slot got its share)."""
    inferences: int
    erases_per_page: list[int]       # over all the inferences, for each page of the NVM region
    page_size: int
    slots: int
    commits_per_inference: float
    endurance: int | None = None     # erase cycles a page endures (board file)
    exact_period: bool = True        # False: not a whole number of turns of the ring (its figures approximate)
    region_bytes: int = 0
    log: bool = False                # the region is a log (TX_CKPT_SLOTS 0; packed result records)
    # a log under continuous power (measure_log_wear): page erases of the measured inferences (those after the
    # boot's first result), and the pages one turn of the log erases (every page but the wrap's slack)
    steady_erases: int | None = None
    spread_pages: int = 0
    largest_pages: int = 1           # pages of the log's largest record (the wrap's slack is this minus one)
    inferences_per_boot: int = 1

    @property
    def erases_per_inference(self) -> float:
        if self.steady_erases is not None:
            return self.steady_erases / self.inferences
        return sum(self.erases_per_page) / self.inferences

    @property
    def max_erases_per_page_per_inference(self) -> float:
        """A ring: the most erased page over whole turns. A log: its erases spread evenly over the pages a turn
        erases (the log enters every page in turn, whatever its size): erases per inference / spread_pages."""
        if self.steady_erases is not None:
            return self.erases_per_inference / self.spread_pages
        return max(self.erases_per_page) / self.inferences

    def region_bytes_for(self, years: float = 10.0, rate_hz: float = 1.0) -> int | None:
        """A log: the NVM region whose pages endure `years` at `rate_hz` (erases spread over its pages; plus the
        wrap's slack); None for a ring or without an endurance or erases."""
        if self.steady_erases is None or self.endurance is None:
            return None
        if not self.erases_per_inference:
            return self.largest_pages * 3 * self.page_size   # nothing wears: the smallest log
        need = self.erases_per_inference * rate_hz * SECONDS_PER_YEAR * years / self.endurance
        return (math.ceil(need) + self.largest_pages - 1) * self.page_size

    @property
    def pages_used(self) -> int:
        return sum(1 for n in self.erases_per_page if n)

    def lifetime_years(self, rate_hz: float = 1.0) -> float | None:
        """Years until the most erased page reaches the endurance, at `rate_hz` inferences per second."""
        worst = self.max_erases_per_page_per_inference
        if self.endurance is None or worst == 0:
            return None
        return self.endurance / (worst * rate_hz * SECONDS_PER_YEAR)

    def as_dict(self, rate_hz: float = 1.0) -> dict:
        return {"flash_erases_per_inference": self.erases_per_inference,
                "flash_max_erases_per_page_per_inference": self.max_erases_per_page_per_inference,
                "flash_lifetime_years_at_1hz": self.lifetime_years(1.0),
                "flash_lifetime_years": self.lifetime_years(rate_hz), "inference_rate_hz": rate_hz,
                "flash_endurance": self.endurance, "flash_pages_used": self.pages_used,
                "nvm_region_bytes": self.region_bytes, "slots": self.slots, "nvm_log": self.log,
                "wear_inferences_measured": self.inferences, "wear_exact_period": self.exact_period,
                "wear_inferences_per_boot": self.inferences_per_boot,
                # no page erased by the measured inferences (a lifetime of None then means: not bounded by them)
                "flash_lifetime_unbounded": self.steady_erases == 0,
                "flash_region_bytes_for_10_years_at_1hz": self.region_bytes_for(10.0, 1.0),
                "flash_region_bytes_for_10_years": self.region_bytes_for(10.0, rate_hz)}

    def line(self, rate_hz: float = 1.0) -> str:
        life = self.lifetime_years(rate_hz)
        rate = "1 Hz" if rate_hz == 1.0 else f"{rate_hz:g} Hz"
        layout = (f"a log over {self.region_bytes // 1024} KiB" if self.log else
                  f"{self.slots} slots in {self.region_bytes // 1024} KiB")
        return (f"flash wear: {self.erases_per_inference:.3g} page erases per inference over {self.pages_used} of "
                f"{len(self.erases_per_page)} pages ({layout}), max "
                f"{self.max_erases_per_page_per_inference:.3g} per page -> lifetime "
                + (f"{life:,.3g} years at {rate} ({self.endurance:,} cycles per page)" if life is not None
                   else "not stated (the board file gives no flash endurance)" if self.endurance is None
                   else "unbounded by these inferences (no page erased while they ran)")
                + f"; measured over {self.inferences} inferences" + ("" if self.exact_period else
                                                                      " (not a whole period: approximate)")
                + ("" if self.steady_erases is None else
                   f" in one boot (continuous power), spread over {self.spread_pages} pages; region for 10 years at "
                   f"{rate}: " + (f"{self.region_bytes_for(10.0, rate_hz):,} bytes" if self.region_bytes_for(10.0, rate_hz)
                                  is not None else "not stated")))


def nvm_defines(board) -> dict[str, object]:
    """The C defines of the campaign firmware's NVM layer: the mailbox, the NVMC rules (nWRITE from the board
    file, the nRF52840's 2 by default) and the emulated flash's shadow in the PSRAM. A board whose own NVM has no
    erase (an SPI FRAM) gets no NVMC rules and TX_NVM_ERASE 0 (the runtime never erases; the shadow logs writes)."""
    d = {"TX_PF_MAILBOX": f"0x{PSRAM_BASE + MAILBOX_OFFSET:08x}u",
         "TX_NVM_EMU_SHADOW": f"0x{PSRAM_BASE + SHADOW_OFFSET:08x}u"}
    if not board.flash_nvm.erases:
        return {**d, "TX_NVM_ERASE": 0}
    return {**d, "TX_NVM_NVMC_RULES": 1, "TX_NVM_MAX_WRITES_PER_WORD": f"{board.nvm.max_writes_per_word or 2}u"}


# ------------------------------------------------------------------------------------------------ the PSRAM file

def _rw(psram: Path, offset: int, data: bytes | None = None, size: int = 0) -> bytes:
    with open(psram, "r+b" if data is not None else "rb") as f:
        f.seek(offset)
        if data is not None:
            f.write(data)
            return b""
        return f.read(size)


def reset_shadow(psram: Path, *, counters: bool = True, capacity: int = LOG_CAPACITY) -> None:
    """Empties the event log (it records up to `capacity` events); with `counters` also the erase counters and
    write counts (a fresh flash, as erase_nvm gives)."""
    if counters:
        _rw(psram, SHADOW_OFFSET + ERASES, b"\0" * (LOG - ERASES))
    _rw(psram, SHADOW_OFFSET, struct.pack("<4I", MAGIC, 0, min(capacity, LOG_CAPACITY), 0))


def reset_erase_counters(psram: Path) -> None:
    """Zeroes the erase counters only (each word's writes since its erase, the nWRITE state, are kept): wear
    measured from here on a flash in use."""
    _rw(psram, SHADOW_OFFSET + ERASES, bytes(4 * MAX_PAGES))


def read_events(psram: Path, *, tick_origin: int, instructions_per_tick: float) -> list[NvmEvent]:
    """The logged events, instruction counts from reset (SysTick ticks x instructions per tick + the
    instructions before SysTick starts)."""
    magic, n, cap, _ = struct.unpack("<4I", _rw(psram, SHADOW_OFFSET, size=16))
    if magic != MAGIC:
        raise TinyexitError("the emulated flash's event log was not set up (reset_shadow) before the boot")
    if n > cap:
        raise TinyexitError(f"the emulated flash's event log overflowed ({n} events, room for {cap})")
    raw = _rw(psram, SHADOW_OFFSET + LOG, size=n * EVENT_BYTES)
    out = []
    for k in range(n):
        kind, off, nwords, ticks = struct.unpack_from("<4I", raw, k * EVENT_BYTES)
        out.append(NvmEvent(tick_origin + int(ticks * instructions_per_tick), KINDS.get(kind, str(kind)), off, nwords))
    return out


def read_erases(psram: Path, pages: int) -> list[int]:
    """Erase count of each of the first `pages` NVM pages since the last reset_shadow."""
    if pages > MAX_PAGES:
        raise TinyexitError(f"the emulated flash counts erases of {MAX_PAGES} pages at most (asked for {pages})")
    return list(struct.unpack(f"<{pages}I", _rw(psram, SHADOW_OFFSET + ERASES, size=4 * pages)))


# ------------------------------------------------------------------------------------------------ measurements

def nvm_trace(target, input_index: int, granularity, *, input_id: int = 1, threshold: int | None = None,
              low_energy_units: int | None = None, warn_at_instruction: int | None = None) -> NvmTrace:
    """The NVM events of one uninterrupted inference from a blank NVM on an EmulatedTarget (with the power-fail
    warning from `warn_at_instruction` on: a just-in-time granularity's JIT commit)."""
    if target.tick_origin is None:
        target.calibrate()
    reset_shadow(target.psram)
    b = target.uninterrupted(input_index, input_id, granularity, threshold=threshold,
                             low_energy_units=low_energy_units, warn_at_instruction=warn_at_instruction)
    nvm = target.board.flash_nvm   # the NVM the emulation stands for: its times (an FRAM: bytes, no erase)
    return NvmTrace(read_events(target.psram, tick_origin=target.tick_origin,
                                instructions_per_tick=target.board.instructions_per_tick or 40),
                    b.instructions, int(math.ceil(target.board.instructions_per_tick or 40)), target.board.nvm.page_size,
                    nvm.erase_page_s if nvm.erases else 0.0, nvm.word_write_s, target.board.clock_hz)


def nvm_op_instructions(target, input_index: int, granularity, *, input_id: int = 1,
                        threshold: int | None = None) -> int:
    """Instructions one uninterrupted inference (from a blank NVM) spends inside NVM erases and writes: the
    emulated driver, the NVMC rule checks and the shadow (tx_nvm_emu_enter .. tx_nvm_emu_leave). On the real
    board the NVMC does this work while the CPU waits: its cost is time (NvmTrace.nvm_seconds), not these."""
    window = tuple(toolchain.symbol_address(target.fw.elf, s) for s in ("tx_nvm_emu_enter", "tx_nvm_emu_leave"))
    target.erase_nvm()
    target.mailbox(input_index, input_id, granularity, threshold=threshold)
    b = target.boot(window=window)
    if b.exit_code != 0 or b.output is None:
        raise TinyexitError(f"the uninterrupted emulated run ({granularity}) failed (status {b.exit_code})")
    return b.window_instructions


def ring_period(commits: int, slots: int) -> int:
    """Inferences after which the slot ring is back where it started: each inference moves it by `commits`."""
    return slots // math.gcd(commits, slots) if commits else 1


def measure_wear(target, granularity, *, input_index: int = 0, threshold: int | None = None,
                 max_inferences: int = 256, progress=None) -> FlashWear:
    """Erases per page over one period of the slot ring: consecutive uninterrupted inferences of the same input
    (new input ids, so each is computed and committed), one boot each, after one turn of the ring from a blank
    NVM (a commit skips pages that read erased, so a flash's first turn erases less than the steady state measured
    here), with fresh erase counters. A log: measure_log_wear (continuous power, one boot)."""
    pages = target.nvm_size // target.board.nvm.page_size
    first = target.uninterrupted(input_index, 0x57000000, granularity, threshold=threshold)   # commits, slots
    if first.log:
        return measure_log_wear(target, granularity, input_index=input_index, threshold=threshold,
                                max_inferences=max(max_inferences, 2048), first=first)
    period = ring_period(first.commits, first.slots)
    n = min(period, max_inferences)
    exact = n == period
    warmup = -(-first.slots // max(1, first.commits))
    target.erase_nvm()

    def infer(k: int, what: str) -> None:
        target.mailbox(input_index, 0x57000001 + k, granularity, threshold=threshold)
        b = target.boot()
        if b.exit_code != 0 or b.output is None:
            raise TinyexitError(f"inference {k} of the wear measurement ({what}) failed (status {b.exit_code}): "
                                f"{b.text[-300:]}")
    for k in range(warmup):   # one turn: every slot (page) written once, as on a flash in use
        infer(k, "first turn")
    reset_erase_counters(target.psram)
    for k in range(n):
        infer(warmup + k, "measured")
        if progress:
            progress(k + 1, n)
    nvm = target.board.nvm
    return FlashWear(n, read_erases(target.psram, pages), nvm.page_size, first.slots, first.commits,
                     nvm.endurance, exact_period=exact, region_bytes=target.nvm_size, log=first.log)


def measure_log_wear(target, granularity, *, input_index: int = 0, threshold: int | None = None,
                     inferences: int | None = None, max_inferences: int = 2048, first=None,
                     timeout: float = 3600.0) -> FlashWear:
    """A log under continuous power: one boot runs `inferences` consecutive inferences (powerfail_main's count;
    default: enough for the records of 8 pages, at least 8) on a flash whose every page holds data (a flash in use:
    the log must erase each page it enters), and the page erases after the boot's first result are counted over
    whole periods of page entries (_steady_erases; the boot's own start, its first commit on a new page, comes once
    per power-up). Erases spread over the pages a turn
    of the log enters: all but the wrap's slack (a record of the largest size must fit before the end)."""
    page = target.board.nvm.page_size
    pages = target.nvm_size // page
    if first is None:
        first = target.uninterrupted(input_index, 0x57000000, granularity, threshold=threshold)
    largest = -(-(64 + first.stats.get("max_payload", 0)) // page)
    if inferences is None:
        inferences = max(8, min(max_inferences, -(-8 * page // max(1, first.nvm_bytes)) + 1))
    target.erase_nvm()
    target.set_nvm_image(bytes(target.nvm_size))    # every word programmed: old data in every page
    reset_shadow(target.psram)
    target.mailbox(input_index, 0x57000001, granularity, threshold=threshold, count=inferences)
    b = target.boot(timeout=timeout)
    if b.exit_code != 0 or b.output is None:
        raise TinyexitError(f"the wear measurement's boot of {inferences} inferences failed (status {b.exit_code}): "
                            f"{b.text[-300:]}")
    events = read_events(target.psram, tick_origin=0, instructions_per_tick=1)
    results = [k for k, e in enumerate(events) if e.kind == "result"]
    if len(results) != inferences:
        raise TinyexitError(f"the wear measurement's boot logged {len(results)} results, expected {inferences}")
    steady, measured = _steady_erases(events, results)
    nvm = target.board.nvm
    return FlashWear(measured, read_erases(target.psram, pages), page, pages, first.commits, nvm.endurance,
                     exact_period=False, region_bytes=target.nvm_size, log=True, steady_erases=steady,
                     spread_pages=pages - largest + 1, largest_pages=largest, inferences_per_boot=inferences)


def _steady_erases(events: Sequence[NvmEvent], results: Sequence[int]) -> tuple[int, int]:
    """(page erases, inferences) of a boot's steady state: over the inferences from the last result before its first
    erase after the first result to the last result before its last erase (whole periods of the log's page entries,
    so that neither end of the window counts a page the log only entered); without two such erases, all after the
    first result."""
    erases = [k for k, e in enumerate(events) if e.kind == "erase" and k > results[0]]
    if len(erases) >= 2:
        a = max(i for i, r in enumerate(results) if r < erases[0])
        b = max(i for i, r in enumerate(results) if r < erases[-1])
        if b > a:
            return sum(results[a] < k <= results[b] for k in erases), b - a
    return len(erases), len(results) - 1


def checkpoint_overhead(target, granularities: Sequence[str], *, input_index: int = 0,
                        threshold: int | None = None) -> dict[str, dict]:
    """Continuous power (no cut): instructions of one inference (init + boot + run, the plugin's window),
    commits and NVM bytes written, for 'none' (result record only) and each granularity; 'overhead' is the
    difference in instructions with 'none'. For the benchmark (docs/DESIGN.md 10)."""
    from tinyexit.pipeline import Granularity
    rows: dict[str, dict] = {}
    for text in ["none", *[g for g in granularities if g != "none"]]:
        g = Granularity.parse(text)
        b = target.uninterrupted(input_index, 1, g, threshold=threshold)
        rows[str(g)] = {"instructions": b.window_instructions, "commits": b.commits, "nvm_bytes": b.nvm_bytes,
                        "nvm_used": b.nvm_used, "exit": b.exit_index,
                        **{k: b.stats[k] for k in ("erases", "prepared", "skipped", "jit_commits") if k in b.stats}}
    base = rows["none"]["instructions"]
    for r in rows.values():
        r["overhead"] = r["instructions"] - base
        r["overhead_percent"] = 100.0 * r["overhead"] / base if base else 0.0
    return rows


def flash_lifetime(target, inferences: int) -> float | None:
    """Years at one inference a second until the most erased page of the campaign reaches the endurance."""
    nvm = target.board.nvm
    pages = target.nvm_size // nvm.page_size
    if nvm.page_size <= 1 or pages > MAX_PAGES:     # no page erases (e.g. FRAM): no erase wear to state
        return None
    erases = read_erases(target.psram, pages)
    if not inferences or not max(erases) or nvm.endurance is None:
        return None
    return nvm.endurance / (max(erases) / inferences * SECONDS_PER_YEAR)
