"""pyOCD without a probe fails at once with pyOCD's finding and a hint; serial port auto-detection;
Renode files carry the board's platform, the ELF and the result line; runner selection."""
import shutil
import time
from types import SimpleNamespace

import pytest

from tinyexit.boards import load_board
from tinyexit.errors import TinyexitError
from tinyexit.targets import NoProbeError, get_runner
from tinyexit.targets import pyocd_runner
from tinyexit.targets.renode import RenodeRunner, write_renode_files


def test_pyocd_without_probe_fails_fast(tmp_path):
    if pyocd_runner.connected_probes():
        pytest.skip("a debug probe is connected to this machine")
    board = load_board("nrf52840")
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    t0 = time.monotonic()
    with pytest.raises(NoProbeError) as exc:
        get_runner(board).run(elf, timeout=60)
    assert time.monotonic() - t0 < 15
    msg = str(exc.value)
    assert "No connected debug probes" in msg and "--emulate" in msg and "pyocd list" in msg


def _port(device, vid, serial_number, description="x"):
    return SimpleNamespace(device=device, vid=vid, serial_number=serial_number, description=description)


def test_serial_port_detection(monkeypatch):
    ports = [_port("/dev/ttyS0", None, None), _port("/dev/ttyACM0", 0x1366, "000683123456"),
             _port("/dev/ttyACM1", 0x0D28, "0240000034544e45")]
    monkeypatch.setattr(pyocd_runner.list_ports, "comports", lambda: ports)
    assert pyocd_runner.find_serial_port("683123456") == "/dev/ttyACM0"      # J-Link serial number
    assert pyocd_runner.find_serial_port("0240000034544e45001") == "/dev/ttyACM1"
    with pytest.raises(TinyexitError, match="several probe serial ports.*--port"):
        pyocd_runner.find_serial_port(None)
    monkeypatch.setattr(pyocd_runner.list_ports, "comports", lambda: ports[:2])
    assert pyocd_runner.find_serial_port(None) == "/dev/ttyACM0"
    monkeypatch.setattr(pyocd_runner.list_ports, "comports", lambda: ports[:1])
    with pytest.raises(TinyexitError, match="no serial port of a debug probe.*--port"):
        pyocd_runner.find_serial_port(None)


def test_renode_files(tmp_path):
    board = load_board("nrf52840")
    elf = tmp_path / "firmware.elf"
    resc, robot = write_renode_files(board, elf, tmp_path / "renode", port=4567)
    r = resc.read_text()
    assert "machine LoadPlatformDescription @platforms/cpus/nrf52840.repl" in r
    assert f"sysbus LoadELF $elf" in r and f"$elf?=@{elf.resolve()}" in r
    assert "showAnalyzer sysbus.uart0" in r and "CreateServerSocketTerminal 4567" in r
    assert "connector Connect sysbus.uart0 tinyexit_uart" in r
    t = robot.read_text()
    assert "Resource                      ${RENODEKEYWORDS}" in t and f"@{resc.resolve()}" in t
    assert "Create Terminal Tester    ${UART}" in t and "Wait For Line On Uart     TX END" in t


def test_renode_missing_says_so(tmp_path, monkeypatch):
    if shutil.which("renode"):
        pytest.skip("renode is installed here")
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(TinyexitError, match=r"Renode is not installed.*renode\.io.*were written"):
        RenodeRunner(load_board("nrf52840")).run(elf)
    assert (tmp_path / "renode" / "nrf52840.resc").exists()


def test_runner_selection():
    real = load_board("nrf52840")
    assert get_runner(real).name == "pyocd" and get_runner(real, "renode").name == "renode"
    assert get_runner(load_board("nrf52840", emulate=True)).name == "qemu"
    with pytest.raises(TinyexitError, match="has no 'pyocd' runner"):
        get_runner(load_board("netduinoplus2"), "pyocd")


def test_flash_cli_without_probe_is_quick_and_clear(tmp_path):
    """`tinyexit flash --board nrf52840 RUN` with no probe: exit status 2, pyOCD's finding, no traceback,
    and it does not wait (it checks for the probe before building anything)."""
    import subprocess
    import sys
    if pyocd_runner.connected_probes():
        pytest.skip("a debug probe is connected to this machine")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "tinyexit", "flash", "--board", "nrf52840", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 30
    assert p.returncode == 2
    assert "No connected debug probes" in p.stderr and "--emulate" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
