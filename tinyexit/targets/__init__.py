"""Runners: run a firmware ELF on a board (real through pyOCD, emulated through QEMU or Renode) and read
its serial output. One small interface:

    runner = get_runner(board, name=None)        # the board's default runner unless `name` is given
    result = runner.run(elf, timeout=60.0)       # -> RunResult (serial text, exit code, instruction counts)

Errors a user can act on are TinyexitError subclasses: FirmwareTimeoutError (hang), FirmwareFaultError
(FAULT line or a failing exit status), MissingToolError (QEMU/Renode not installed), NoProbeError.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Protocol

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


@dataclasses.dataclass
class RunResult:
    output: str                      # everything the firmware wrote to its UART
    exit_code: int | None            # the emulator's status (semihosting exit code); None on real boards
    insns: InsnCounts | None = None  # exact counts from the QEMU plugin when requested
    runner: str = ""
    seconds: float = 0.0

    @property
    def lines(self) -> list[str]:
        return [ln.rstrip("\r") for ln in self.output.splitlines()]


class Runner(Protocol):
    name: str

    def run(self, elf: Path, *, timeout: float = 60.0, **options) -> RunResult: ...


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


def get_runner(board: Board, name: str | None = None) -> Runner:
    name = name or board.default_runner
    if name not in board.runners:
        raise TinyexitError(f"board {board.name} has no '{name}' runner; its runners are "
                            f"{', '.join(board.runners)}. Pick one of them with --runner.")
    if name == "qemu":
        from tinyexit.targets.qemu import QemuRunner
        return QemuRunner(board)
    if name == "pyocd":
        from tinyexit.targets.pyocd_runner import PyocdRunner
        return PyocdRunner(board)
    if name == "renode":
        from tinyexit.targets.renode import RenodeRunner
        return RenodeRunner(board)
    raise TinyexitError(f"unknown runner '{name}'")
