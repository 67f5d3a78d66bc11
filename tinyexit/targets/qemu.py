"""QEMU runner: the firmware's UART on a TCP socket that QEMU serves and waits on
(`-serial tcp:127.0.0.1:0,server=on,wait=on`, read through tinyexit.targets.uart_socket, so no byte is lost
and input can be sent to the firmware); semihosting gives the firmware's exit status; `-icount shift=0`
makes SysTick count instructions; the optional plugin counts instructions exactly and estimates Cortex-M4
cycles (zero wait states)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from tinyexit.boards import Board
from tinyexit.errors import MissingToolError, TinyexitError
from tinyexit.targets import (END_MARK, Dialog, FirmwareFaultError, FirmwareTimeoutError, Runner, RunnerCaps,
                              RunResult, check_output, tail)
from tinyexit.targets import plugin as insn_plugin
from tinyexit.targets import uart_socket

QEMU_INSTALL = "apt-get install -y --no-install-recommends qemu-system-arm"
LIMIT_STATUS = 124
# The port is followed by ",server": a note read while QEMU was still writing it gives no partial number.
PORT_RE = re.compile(r"waiting for connection on: disconnected:tcp:127\.0\.0\.1:(\d+),server")


def qemu_binary() -> str:
    path = shutil.which("qemu-system-arm")
    if path is None:
        raise MissingToolError("qemu-system-arm", QEMU_INSTALL)
    return path


def qemu_command(board: Board, elf: Path, port: int, *, icount: bool = True, plugin: str | None = None,
                 log: Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    if not board.qemu_machine:
        raise TinyexitError(f"board {board.name} has no qemu section; it cannot be emulated.")
    cmd = [qemu_binary(), "-M", board.qemu_machine, "-display", "none", "-monitor", "none",
           "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
           "-semihosting-config", "enable=on,target=native", "-no-reboot", "-kernel", str(elf)]
    if icount:
        cmd += ["-icount", "shift=0"]
    if plugin:
        cmd += ["-plugin", plugin, "-d", "plugin"]
        if log:
            cmd += ["-D", str(log)]
    return cmd + list(extra)


def memory_file_args(path: str | Path, size: int) -> list[str]:
    """QEMU options that make a file of `size` bytes the machine's RAM (shared: what the firmware writes is
    in the file after the run; on mps2-an386 that RAM is the PSRAM)."""
    return ["-object", f"memory-backend-file,id=txnvm,size={size},mem-path={path},share=on",
            "-machine", "memory-backend=txnvm"]


class QemuRunner(Runner):
    name = "qemu"
    caps = RunnerCaps(send=True, exit_status=True, instruction_windows=True, exact_cuts=True, memory_file=True,
                      cycle_estimate=True)

    def run(self, elf: str | Path, *, timeout: float = 60.0, count_insns: bool = False,
            limit: int | None = None, window: tuple[int, int] | None = None, icount: bool = True,
            send: "bytes | Dialog" = b"", end_mark: str | None = None, extra_args: Sequence[str] = (),
            check: bool = True, each_window: bool = False,
            memory_file: tuple[str | Path, int] | None = None) -> RunResult:
        """Run `elf` until the firmware exits (semihosting), QEMU stops at the instruction `limit`, or
        `timeout` seconds pass (FirmwareTimeoutError). `send` is written to the firmware's UART once
        connected (a Dialog: answers the firmware's output as it comes). `window`: (start, stop) addresses whose instructions the plugin counts apart
        (each_window=True: also one count per window, in InsnCounts.per_window). `memory_file`: (path, size)
        of the file that backs the machine's RAM. `extra_args`: more QEMU options.
        With check=True a FAULT line or a non-zero exit status raises FirmwareFaultError."""
        elf = Path(elf)
        if memory_file is not None:
            extra_args = [*memory_file_args(*memory_file), *extra_args]
        if not elf.exists():
            raise TinyexitError(f"{elf} does not exist; build the firmware first (tinyexit build).")
        use_plugin = count_insns or limit is not None or window is not None
        with tempfile.TemporaryDirectory(prefix="tinyexit-qemu-") as tmpdir:
            log = Path(tmpdir) / "plugin.log"
            plugin = insn_plugin.plugin_args(limit, window, LIMIT_STATUS, each_window) if use_plugin else None
            # Port 0: QEMU binds a free port itself and names it on stderr, so no other process can
            # take it between choosing and binding (several QEMUs run at once on a shared machine).
            cmd = qemu_command(self.board, elf, 0, icount=icount, plugin=plugin, log=log, extra=extra_args)
            errpath = Path(tmpdir) / "stderr"
            errf = open(errpath, "w+")
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                    start_new_session=True)
            out = b""
            try:
                port = self._wait_port(proc, errpath, t0 + timeout)
                if port is not None:
                    out = self._talk(proc, port, send, t0 + timeout, end_mark)
                code = proc.wait(timeout=max(0.5, t0 + timeout - time.monotonic()))
            except (FirmwareTimeoutError, subprocess.TimeoutExpired) as e:
                self._kill(proc)
                text = out.decode("utf-8", "replace") if out else getattr(e, "partial", "")
                raise FirmwareTimeoutError(
                    f"{elf.name} on {self.board.qemu_machine} did not finish within {timeout:g} s; QEMU "
                    f"was stopped. Last output:\n    {tail(text)}\nThe firmware is probably stuck (an "
                    f"endless loop, or waiting for input); if it is only slow, raise the timeout.") from None
            finally:
                if proc.poll() is None:
                    self._kill(proc)
                errf.seek(0)
                stderr = errf.read()
                errf.close()
            seconds = time.monotonic() - t0
            counts = None
            if use_plugin:
                counts = insn_plugin.parse_counts((log.read_text() if log.exists() else "") + stderr)
                if counts is None and check:
                    raise TinyexitError(f"the instruction-count plugin printed nothing; QEMU said:\n{stderr}")
        text = out.decode("utf-8", "replace")
        result = RunResult(output=text, exit_code=code, insns=counts, runner="qemu", seconds=seconds)
        limited = limit is not None and code == LIMIT_STATUS and counts and counts.limit_reached
        notes = [ln for ln in stderr.strip().splitlines() if "waiting for connection" not in ln]
        if check and not out and code not in (0, None) and not limited and \
                any(ln.startswith("qemu-system-arm:") for ln in notes):
            raise TinyexitError(f"QEMU could not run {elf.name}: {' '.join(notes)[-600:]}")
        if check:
            check_output(text, f"{elf.name} on {self.board.qemu_machine}")
            if code != 0 and not limited:
                hint = notes[-1] if notes else ""
                raise FirmwareFaultError(
                    f"{elf.name} on {self.board.qemu_machine} ended with status {code}"
                    f"{' (' + hint + ')' if hint else ''}. Last output:\n    {tail(text)}")
        return result

    @staticmethod
    def _wait_port(proc: subprocess.Popen, errpath: Path, deadline: float) -> int | None:
        """The TCP port QEMU listens on for the serial line (from its 'waiting for connection' note);
        None when QEMU exited first (the caller reports its status)."""
        while True:
            m = PORT_RE.search(errpath.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise FirmwareTimeoutError("QEMU did not open its serial socket")
            time.sleep(0.01)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait()

    def _talk(self, proc: subprocess.Popen, port: int, send: "bytes | Dialog", deadline: float,
              end_mark: str | None) -> bytes:
        """Connect to QEMU's serial socket (it waits for us before starting the guest), send input, read
        until the socket closes (QEMU exited). A board that does not exit by semihosting stops at the end
        mark instead."""
        sock = uart_socket.connect(port, deadline, lambda: proc.poll() is None, "QEMU")
        if sock is None:
            return b""  # QEMU ended before we connected; the caller reports its status
        stop = None
        if end_mark and self.board.exit != "semihosting":
            mark = end_mark.encode()
            stop = lambda out: mark in out and proc.poll() is None  # noqa: E731
        try:
            dialog = send if isinstance(send, Dialog) else None
            uart_socket.send(sock, dialog.start() if dialog else send, deadline)
            return uart_socket.read_all(sock, deadline, stop, reply=dialog.feed if dialog else None)
        finally:
            uart_socket.close(sock)


__all__ = ["QemuRunner", "qemu_command", "memory_file_args", "END_MARK", "FirmwareFaultError"]
