"""Runners: run a firmware ELF on a board (real through pyOCD, emulated through QEMU or Renode) and read
its serial output. One small interface, with what each runner can do declared as capabilities (Zephyr's
RunnerCaps): callers ask for the capabilities they need and never construct a runner class.

    runner = get_runner(board, runner=None, needs=(), **options)  # the board's default unless `runner` is given
    runner.caps.instruction_windows                               # optional features: ask before using them
    result = runner.run(elf, timeout=60.0, **run_options)         # -> RunResult (serial text, exit code, counts)

A runner asked for a capability it lacks (through `needs` or a run option) raises a one-line TinyexitError.

Errors a user can act on are TinyexitError subclasses: FirmwareTimeoutError (hang), FirmwareFaultError
(FAULT line or a failing exit status), MissingToolError (QEMU/Renode not installed), NoProbeError.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import ClassVar

from tinyexit.boards import Board
from tinyexit.errors import TinyexitError

END_MARK = "TX END"


class FirmwareTimeoutError(TinyexitError):
    """The firmware did not finish in time (a hang, a blocked UART or a too-short timeout)."""


class FirmwareFaultError(TinyexitError):
    """The firmware faulted (HardFault line) or ended with a failing status."""


class NoProbeError(TinyexitError):
    """No debug probe is connected."""


@dataclasses.dataclass
class InsnCounts:
    total: int
    windows: int = 0
    window_insns: int = 0
    limit_reached: int | None = None
    per_window: list[int] = dataclasses.field(default_factory=list)  # with each=True: one count per window
    # Estimated Cortex-M4 cycles (TRM timings, zero wait states, no flash wait states; see insn_count_plugin.c)
    cycles: int = 0
    window_cycles: int = 0
    per_window_cycles: list[int] = dataclasses.field(default_factory=list)
    # The stricter estimate: the same, but a load/store whose address (base or offset register) is the result of
    # the load just before it, or that follows STR [Rn, Rm], is not pipelined (the TRM's load/store timings)
    cycles_strict: int = 0
    window_cycles_strict: int = 0
    per_window_cycles_strict: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunResult:
    output: str                      # everything the firmware wrote to its UART
    exit_code: int | None            # the emulator's status (semihosting exit code); None on real boards
    insns: InsnCounts | None = None  # exact counts from the QEMU plugin when requested
    runner: str = ""
    seconds: float = 0.0

    @property
    def cycles(self) -> int | None:
        """Estimated Cortex-M4 cycles of the whole run (zero wait states), when the plugin counted."""
        return self.insns.cycles if self.insns else None

    @property
    def cycles_per_window(self) -> list[int]:
        """Estimated cycles of every window (each_window=True), in order."""
        return list(self.insns.per_window_cycles) if self.insns else []

    @property
    def cycles_strict(self) -> int | None:
        """The stricter estimate of the whole run (address dependencies between neighbouring loads stall)."""
        return self.insns.cycles_strict if self.insns else None

    @property
    def cycles_strict_per_window(self) -> list[int]:
        """The stricter estimate of every window (each_window=True), in order."""
        return list(self.insns.per_window_cycles_strict) if self.insns else []

    @property
    def lines(self) -> list[str]:
        return [ln.rstrip("\r") for ln in self.output.splitlines()]


@dataclasses.dataclass(frozen=True)
class RunnerCaps:
    """What a runner can do. A run option that needs a capability (RUN_OPTION_CAPS) is refused by a runner
    without it; `options` are the keywords its constructor takes (probe options: port, probe, ...)."""
    flash: bool = False                 # programs a real board's flash
    uart: bool = True                   # reads the firmware's serial output
    send: bool = False                  # writes bytes to the firmware's serial input (send=)
    exit_status: bool = False           # the firmware's exit status (semihosting)
    instruction_windows: bool = False   # exact instruction counts, in all and between two addresses (count_insns=,
                                        # window=, each_window=)
    exact_cuts: bool = False            # stops the firmware after exactly N instructions (limit=): a power cut
    memory_file: bool = False           # the machine's RAM backed by a host file that outlives the run (memory_file=)
    cycle_estimate: bool = False        # estimated Cortex-M4 cycles beside the instruction counts (InsnCounts.cycles)
    options: tuple[str, ...] = ()


CAPABILITIES = {  # what each capability lets a caller do, for the error naming a missing one
    "flash": "program a board's flash", "uart": "read the firmware's serial output",
    "send": "send input to the firmware's serial line", "exit_status": "report the firmware's exit status",
    "instruction_windows": "count instructions between two addresses",
    "exact_cuts": "stop the firmware after an exact number of instructions",
    "memory_file": "back the machine's RAM with a file",
    "cycle_estimate": "estimate Cortex-M4 cycles",
}
RUN_OPTION_CAPS = {"send": "send", "count_insns": "instruction_windows", "window": "instruction_windows",
                   "each_window": "instruction_windows", "limit": "exact_cuts", "memory_file": "memory_file"}
RUNNERS = {"pyocd": "tinyexit.targets.pyocd_runner:PyocdRunner", "qemu": "tinyexit.targets.qemu:QemuRunner",
           "renode": "tinyexit.targets.renode:RenodeRunner"}


class Runner:
    """One way to run a firmware on a board. Subclasses set `name` and `caps` and implement `run`, which
    calls `self.check(options)` first."""
    name: ClassVar[str]
    caps: ClassVar[RunnerCaps]

    def __init__(self, board: Board):
        self.board = board

    def run(self, elf: Path, *, timeout: float = 60.0, **options) -> RunResult:
        raise NotImplementedError

    def require(self, *needs: str) -> None:
        """TinyexitError (one line) naming the first capability of `needs` this runner lacks."""
        for need in needs:
            if need not in CAPABILITIES:
                raise TinyexitError(f"unknown runner capability '{need}'; the capabilities are "
                                    f"{', '.join(CAPABILITIES)}")
            if not getattr(self.caps, need):
                able = [n for n in RUNNERS if getattr(runner_class(n).caps, need)]
                raise TinyexitError(f"the {self.name} runner cannot {CAPABILITIES[need]} ({need}); runners that can: "
                                    f"{', '.join(able) or 'none'}. Choose one with --runner.")

    def check(self, options: dict) -> None:
        """Refuse run options (given with a value) whose capability this runner lacks."""
        self.require(*dict.fromkeys(RUN_OPTION_CAPS[k] for k, v in options.items()
                                    if k in RUN_OPTION_CAPS and v not in (None, False, b"")))


class Dialog:
    """Serial input that answers the firmware (flow control): a runner with `send` calls start() once the line
    is open and feed(new bytes) with every chunk the firmware prints, and writes what they return to the
    firmware's input at once. `send=bytes` is the dialog that writes those bytes at the start."""

    def start(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> bytes:
        return b""


FAULT_RE = re.compile(r"^FAULT\b.*$", re.M)


def check_output(output: str, what: str) -> None:
    """Raise FirmwareFaultError when the firmware printed a FAULT line."""
    m = FAULT_RE.search(output)
    if m:
        raise FirmwareFaultError(f"{what}: the firmware faulted: {m.group(0).strip()}. "
                                 f"Look up pc in the ELF (arm-none-eabi-addr2line -e ELF PC); a stack "
                                 f"overflow or an arena overrun are the usual causes.")


def tail(output: str, n: int = 5) -> str:
    lines = output.strip().splitlines()[-n:]
    return "\n    ".join(lines) if lines else "(nothing)"


def runner_class(name: str) -> type[Runner]:
    """The class of runner `name`; a one-line TinyexitError listing the known runners when there is none."""
    if name not in RUNNERS:
        raise TinyexitError(f"unknown runner '{name}'; the known runners are {', '.join(RUNNERS)}")
    module, cls = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_runner(board: Board, runner: str | None = None, *, needs: tuple[str, ...] = (), **options) -> Runner:
    """The runner of `board`: `runner` (the --runner option) or the board's default. `needs`: capabilities the
    caller relies on (RunnerCaps fields); `options`: the runner's own options (e.g. pyOCD's port and probe;
    None values are left out). Each problem is a one-line TinyexitError: an unknown runner, one the board does
    not list, a missing capability, an option the runner does not take."""
    name = runner or board.default_runner
    cls = runner_class(name)
    if name not in board.runners:
        raise TinyexitError(f"board {board.name} has no '{name}' runner; its runners are "
                            f"{', '.join(board.runners)}. Pick one of them with --runner.")
    options = {k: v for k, v in options.items() if v is not None}
    for k in options:
        if k not in cls.caps.options:
            raise TinyexitError(f"the {name} runner takes no {k} option (--{k}); its options: "
                                f"{', '.join(cls.caps.options) or 'none'}")
    r = cls(board, **options)
    r.require(*needs)
    return r
