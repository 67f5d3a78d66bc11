"""The emulators' UART socket reader keeps every byte sent from the moment the connection exists: the cause of
the emulator flake (issue 13, part 6) was a reader (pyserial's socket:// open) that threw away what arrived
between the TCP handshake and its first read, so a reader the scheduler paused there lost the output."""
import socket
import threading
import time

import pytest
from fw_helpers import firmware, late_reader, toy_app

from tinyexit.targets import FirmwareTimeoutError, get_runner, uart_socket


def _serve_once(payload: bytes, close: bool = True):
    """A listening socket that sends `payload` as soon as it accepts (as QEMU's guest or a Renode may), then
    closes (close=True) or keeps the connection open; returns (port, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    sent = threading.Event()

    def serve():
        conn, _ = srv.accept()
        conn.sendall(payload)
        sent.set()
        if close:
            conn.close()
        else:
            time.sleep(3)
            conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv.getsockname()[1], t, sent


def test_bytes_sent_before_the_first_read_are_kept():
    """The peer sends everything and closes before the reader reads (a reader paused after connect): every
    byte is read, in order."""
    payload = bytes(range(256)) * 64 + b"TX END n=1\n"
    port, t, sent = _serve_once(payload)
    sock = uart_socket.connect(port, time.monotonic() + 10, lambda: True, "stand-in")
    assert sent.wait(10)
    t.join(10)                 # the peer has sent and closed: all of it waits in the socket
    assert uart_socket.read_all(sock, time.monotonic() + 10) == payload
    uart_socket.close(sock)


def test_stop_condition_and_deadline():
    port, _, sent = _serve_once(b"line 1\nTX END n=1\nmore", close=False)
    sock = uart_socket.connect(port, time.monotonic() + 10, lambda: True, "stand-in")
    assert sent.wait(10)
    time.sleep(0.1)
    got = uart_socket.read_all(sock, time.monotonic() + 10, stop=lambda out: b"TX END" in out)
    assert b"TX END" in got and got.startswith(b"line 1\n")
    t0 = time.monotonic()
    with pytest.raises(FirmwareTimeoutError) as exc:   # the peer keeps the socket open and sends no more
        uart_socket.read_all(sock, time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 2.5
    uart_socket.close(sock)
    del exc


def test_connect_gives_up_when_the_emulator_is_gone():
    port = uart_socket.free_port()   # nothing listens there
    assert uart_socket.connect(port, time.monotonic() + 10, lambda: False, "stand-in") is None
    with pytest.raises(FirmwareTimeoutError, match="stand-in did not open its UART socket"):
        uart_socket.connect(port, time.monotonic() + 0.3, lambda: True, "stand-in")


def test_qemu_output_is_whole_when_the_reader_is_late(tmp_path, need_emulator, monkeypatch):
    """The flake itself: QEMU starts the guest the moment it accepts; a reader paused 0.5 s after connecting
    (as on a loaded machine) must still get the whole output of a run that ends before it reads. With the
    former pyserial reader this run gave status 0 and no byte at all."""
    sources, incs, _ = toy_app(tmp_path, n=4)
    fw = firmware(tmp_path, "mps2-an386", sources, include_dirs=incs)
    runner = get_runner(fw.board, "qemu")
    want = runner.run(fw.elf, timeout=60)
    assert "TX END" in want.output and want.exit_code == 0
    late_reader(monkeypatch, 0.5)
    got = runner.run(fw.elf, timeout=60)
    assert got.exit_code == 0 and got.output == want.output
