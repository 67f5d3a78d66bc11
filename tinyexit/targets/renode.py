"""Renode backend for users who have Renode: a generated .resc (the board's platform description, LoadELF,
a UART analyzer and a server socket terminal on the UART) and a Robot test that waits for the result line.
The firmware is the real board's build (Renode models the nRF52840's UARTE). Run when `renode` is on PATH.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tinyexit.boards import Board
from tinyexit.toolchain import render_to
from tinyexit.errors import TinyexitError
from tinyexit.targets import END_MARK, FirmwareTimeoutError, Runner, RunnerCaps, RunResult, check_output, tail
from tinyexit.targets import uart_socket

RENODE_HINT = ("Renode is not installed ('renode' is not on PATH). Install it from https://renode.io "
               "(Linux: the renode_*.deb or the portable .tar.gz from github.com/renode/renode/releases), or run "
               "the firmware on QEMU instead (--runner qemu / --emulate).")


def write_renode_files(board: Board, elf: str | Path, out: str | Path, *, port: int = 3456,
                       end_mark: str = END_MARK, timeout: float = 120.0) -> tuple[Path, Path]:
    """Write <board>.resc and <board>.robot for `elf` into `out`; returns their paths."""
    if not board.renode_platform:
        raise TinyexitError(f"board {board.name} has no renode section; add one (platform, uart) to "
                            f"{board.path} to use Renode.")
    out = Path(out)
    ctx = dict(board=board, elf=Path(elf).resolve(), port=port, end_mark=end_mark, timeout=int(timeout))
    resc = render_to("boards/renode/board.resc.j2", out / f"{board.name}.resc", **ctx)
    robot = render_to("boards/renode/board.robot.j2", out / f"{board.name}.robot", resc=resc.resolve(), **ctx)
    return resc, robot


class RenodeRunner(Runner):
    name = "renode"
    caps = RunnerCaps()   # reads the UART until the end line

    def run(self, elf: str | Path, *, timeout: float = 120.0, end_mark: str = END_MARK, out: str | Path | None = None,
            **options) -> RunResult:
        """Run `elf` in Renode until the `end_mark` line (the Renode files go to `out`, default next to
        the ELF). Options that need a capability Renode lacks are refused; others are ignored."""
        self.check(options)
        elf = Path(elf)
        renode = shutil.which("renode")
        out = Path(out) if out else elf.parent / "renode"
        port = uart_socket.free_port()
        resc, robot = write_renode_files(self.board, elf, out, port=port, end_mark=end_mark, timeout=timeout)
        if renode is None:
            raise TinyexitError(f"{RENODE_HINT} The Renode files were written: {resc} and {robot} "
                                f"(run them later with `renode {resc}` or `renode-test {robot}`).")
        t0 = time.monotonic()
        proc = subprocess.Popen([renode, "--disable-xwt", "--console", "-e", f"include @{resc}; start"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        mark = end_mark.encode()

        def done(out: bytes) -> bool:  # the end line is complete, or the firmware faulted
            i = out.find(mark)
            return (i >= 0 and b"\n" in out[i:]) or b"FAULT" in out

        try:
            sock = uart_socket.connect(port, t0 + timeout, lambda: proc.poll() is None, "Renode")
            if sock is None:
                raise TinyexitError(f"Renode exited (status {proc.returncode}) before it opened its UART "
                                           f"socket on port {port}; run `renode {resc}` to see why.")
            try:
                text = uart_socket.read_all(sock, t0 + timeout, done).decode("utf-8", "replace")
            except FirmwareTimeoutError as e:
                raise FirmwareTimeoutError(f"{elf.name} on Renode printed no '{end_mark}' line within {timeout:g} s. "
                                           f"Last output:\n    {tail(e.partial)}") from None  # type: ignore[attr-defined]
            finally:
                uart_socket.close(sock)
        finally:
            proc.kill()
            proc.wait()
        check_output(text, f"{elf.name} on Renode")
        return RunResult(output=text, exit_code=None, runner="renode", seconds=time.monotonic() - t0)
