"""Real boards through pyOCD's Python API: find the probe (never waiting for one), program the ELF, reset,
and read the firmware's lines from the board's serial port with pyserial until the TX END line."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import serial
from serial.tools import list_ports

from tinyexit.boards import Board
from tinyexit.errors import TinyexitError
from tinyexit.targets import (END_MARK, Dialog, FirmwareTimeoutError, NoProbeError, Runner, RunnerCaps, RunResult,
                              check_output, tail)

# USB vendor ids of the probes and USB-serial bridges found on nRF52840 boards.
PROBE_VIDS = {0x1366: "SEGGER J-Link", 0x0D28: "Arm DAPLink/CMSIS-DAP", 0x1915: "Nordic", 0x0483: "ST-LINK"}


def connected_probes() -> list:
    """pyOCD's list of connected probes, without waiting for one to appear."""
    from pyocd.core.helpers import ConnectHelper
    logging.getLogger("pyocd").setLevel(logging.ERROR)
    return list(ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False))


def no_probe_message(board: Board) -> str:
    return (f"pyOCD: No connected debug probes (pyOCD found no probe to flash {board.name}). Connect the "
            f"board's debug USB port (nRF52840-DK: the J-Link OB port, the one near the power switch), check "
            f"that `pyocd list` shows it (on Linux you may need the probe's udev rules), or run the same "
            f"firmware on the emulator with --emulate.")


def find_serial_port(probe_uid: str | None = None) -> str:
    """The serial port of the board: the one whose USB serial number matches the probe's, else the only
    port of a known probe vendor. Raises with the list of ports when it cannot choose."""
    ports = list(list_ports.comports())
    if probe_uid:
        for p in ports:
            if p.serial_number and (p.serial_number.lstrip("0") in probe_uid or probe_uid in p.serial_number):
                return p.device
    known = [p for p in ports if p.vid in PROBE_VIDS]
    if len(known) == 1:
        return known[0].device
    listing = ", ".join(f"{p.device} ({p.description})" for p in ports) or "none"
    if not known:
        raise TinyexitError(f"no serial port of a debug probe found (ports: {listing}). Connect the board or "
                            f"name its port with --port.")
    raise TinyexitError(f"several probe serial ports found ({listing}); choose one with --port.")


def read_until(port: serial.Serial, end_mark: str, deadline: float, reply=None) -> str:
    """The text from `port` up to and including the line with `end_mark` (or a FAULT line); `reply(new bytes)`
    answers each chunk (a Dialog's feed: what it returns is written at once)."""
    out = bytearray()
    while True:
        chunk = port.read(port.in_waiting or 1)
        if chunk:
            out += chunk
            if reply is not None:
                answer = reply(chunk)
                if answer:
                    port.write(answer)
            text = out.decode("utf-8", "replace")
            i = text.find(end_mark)
            if i >= 0 and "\n" in text[i:]:
                return text
            if "\nFAULT" in text or text.startswith("FAULT"):
                time.sleep(0.1)
                out += port.read(port.in_waiting)
                return out.decode("utf-8", "replace")
        if time.monotonic() > deadline:
            err = FirmwareTimeoutError("timeout")
            err.partial = out.decode("utf-8", "replace")  # type: ignore[attr-defined]
            raise err


class PyocdRunner(Runner):
    name = "pyocd"
    caps = RunnerCaps(flash=True, send=True, options=("port", "probe", "baudrate"))

    def __init__(self, board: Board, port: str | None = None, probe: str | None = None,
                 baudrate: int | None = None):
        self.board = board
        self.port = port
        self.probe = probe
        self.baudrate = baudrate or board.serial_baudrate

    def run(self, elf: str | Path, *, timeout: float = 60.0, end_mark: str = END_MARK, send: "bytes | Dialog" = b"",
            **options) -> RunResult:
        """Flash `elf`, reset, read the serial port until `end_mark`. `send`: bytes written to the board
        once it prints its READY line (firmware built with serial inputs), or a Dialog that answers the board's
        output as it comes (flow control: e.g. one audio chunk per request). Options that need a capability
        pyOCD lacks (instruction counts, cuts) are refused; others are ignored."""
        self.check(options)
        elf = Path(elf)
        probes = connected_probes()
        if self.probe:
            probes = [p for p in probes if self.probe in p.unique_id]
        if not probes:
            raise NoProbeError(no_probe_message(self.board))
        if len(probes) > 1:
            ids = ", ".join(f"{p.unique_id} ({p.description})" for p in probes)
            raise TinyexitError(f"several debug probes are connected: {ids}. Choose one with --probe UID.")
        probe = probes[0]
        if not elf.exists():
            raise TinyexitError(f"{elf} does not exist; build the firmware first (tinyexit build).")
        from pyocd.core.helpers import ConnectHelper
        from pyocd.flash.file_programmer import FileProgrammer
        port_name = self.port or find_serial_port(probe.unique_id)
        t0 = time.monotonic()
        try:
            ser = serial.Serial(port_name, self.baudrate, timeout=0.05)
        except serial.SerialException as e:
            raise TinyexitError(f"cannot open the serial port {port_name}: {e}. Check --port and that no other "
                                f"program (a terminal) holds it.") from None
        with ser:
            session = ConnectHelper.session_with_chosen_probe(
                blocking=False, unique_id=probe.unique_id, target_override=self.board.pyocd_target,
                options={"frequency": 4000000})
            if session is None:
                raise NoProbeError(no_probe_message(self.board))
            with session:
                FileProgrammer(session).program(str(elf), file_format="elf")
                ser.reset_input_buffer()
                session.target.reset()  # runs the new image
            try:
                text = ""
                if isinstance(send, Dialog):
                    ser.write(send.start())
                    text = read_until(ser, end_mark, t0 + timeout, reply=send.feed)
                else:
                    if send:
                        text = read_until(ser, "TX READY", t0 + timeout)
                        ser.write(send)
                    text += read_until(ser, end_mark, t0 + timeout)
            except FirmwareTimeoutError as e:
                raise FirmwareTimeoutError(
                    f"{elf.name} on {self.board.name} printed no '{end_mark}' line within {timeout:g} s. Last "
                    f"output:\n    {tail(getattr(e, 'partial', ''))}\nCheck the port ({port_name}) and baud rate "
                    f"({self.baudrate}); if the firmware is only slow, raise the timeout.") from None
        check_output(text, f"{elf.name} on {self.board.name}")
        return RunResult(output=text, exit_code=None, runner="pyocd", seconds=time.monotonic() - t0)
