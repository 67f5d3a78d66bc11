"""The firmware's UART served by an emulator on a local TCP socket (QEMU's `-serial tcp:...,server=on`,
Renode's server socket terminal): connect, send input, and keep every byte the emulator sends from the
moment the connection exists until it closes the socket, a stop condition holds, or a deadline passes.

A plain socket, not pyserial's `socket://` URL: pyserial's open() ends with reset_input_buffer(), which
reads and throws away whatever the peer sent between the TCP handshake and that call. QEMU starts the guest
the moment it accepts, so a reader that the scheduler paused there (a loaded machine) lost the first lines,
or the whole output of a short run, which then looked like a run that printed nothing and ended with
status 0. A Renode (or a stand-in) that prints on accept lost its lines the same way. pyserial's close()
also sleeps 0.3 s, once per emulator run."""
from __future__ import annotations

import errno
import select
import socket
import time
from typing import Callable

from tinyexit.targets import FirmwareTimeoutError

HOST = "127.0.0.1"
CHUNK = 65536


def free_port() -> int:
    """A TCP port that is free now (for an emulator that cannot bind port 0 itself and name it; another
    process may take it before the emulator binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def connect(port: int, deadline: float, alive: Callable[[], bool], what: str) -> socket.socket | None:
    """Connect to the emulator's UART socket on HOST:`port`, retrying while it is not listening yet.
    None when `alive()` turns False first (the emulator exited; its caller reports why); after `deadline`
    (time.monotonic()) FirmwareTimeoutError naming `what`."""
    while True:
        if not alive():
            return None
        try:
            return socket.create_connection((HOST, port), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        except OSError:
            if time.monotonic() > deadline:
                raise FirmwareTimeoutError(f"{what} did not open its UART socket on port {port} in time.") from None
            time.sleep(0.02)


def send(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Write `data` to the firmware's UART (the emulator buffers what the guest has not read yet)."""
    if not data:
        return
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise FirmwareTimeoutError("the firmware did not read its input") from None
    except (BrokenPipeError, ConnectionResetError):
        pass  # the emulator exited; what it printed is still read, its status tells why


def read_all(sock: socket.socket, deadline: float, stop: Callable[[bytes], bool] | None = None,
             reply: Callable[[bytes], bytes] | None = None) -> bytes:
    """Every byte from `sock` until the peer closes it (or resets it: what arrived before is kept), or
    `stop(bytes so far)` is True; `reply(new bytes)` answers each chunk (what it returns is sent at once).
    Past `deadline`: FirmwareTimeoutError whose `partial` is the text so far."""
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            err = FirmwareTimeoutError("timeout")
            err.partial = out.decode("utf-8", "replace")  # type: ignore[attr-defined]
            raise err
        ready, _, _ = select.select([sock], [], [], min(left, 0.5))
        if not ready:
            continue
        try:
            chunk = sock.recv(CHUNK)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                continue
            break  # ECONNRESET and the like: the emulator is gone
        if not chunk:
            break  # the emulator closed the socket (QEMU: it exited)
        out += chunk
        if reply is not None:
            send(sock, reply(chunk), deadline)
        if stop is not None and stop(bytes(out)):
            break
    return bytes(out)


def close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
