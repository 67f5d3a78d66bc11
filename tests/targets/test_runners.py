"""pyOCD without a probe fails at once with pyOCD's finding and a hint; serial port auto-detection;
Renode files carry the board's platform, the ELF and the result line; runner selection, capabilities and the
CLI's --runner."""
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
    assert "sysbus LoadELF $elf" in r and f"$elf?=@{elf.resolve()}" in r
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


def _one_line_error(match, call, *args, **kw):
    with pytest.raises(TinyexitError) as exc:
        call(*args, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and match in msg, msg


def test_runner_capabilities():
    """Runners declare what they can do; asking one for a capability it lacks, an unknown runner or an option
    it does not take is a one-line error naming the ones that fit."""
    real, emu = load_board("nrf52840"), load_board("nrf52840", emulate=True)
    qemu = get_runner(emu, needs=("instruction_windows", "exact_cuts", "memory_file"))
    assert qemu.name == "qemu" and qemu.caps.exit_status and not qemu.caps.flash
    assert get_runner(real).caps.flash and not get_runner(real).caps.instruction_windows
    _one_line_error("the qemu runner cannot program a board's flash (flash); runners that can: pyocd",
                    get_runner, emu, needs=("flash",))
    _one_line_error("the renode runner cannot stop the firmware after an exact number of instructions (exact_cuts); "
                    "runners that can: qemu", get_runner, real, "renode", needs=("exact_cuts",))
    _one_line_error("unknown runner 'jlink'; the known runners are pyocd, qemu, renode", get_runner, real, "jlink")
    _one_line_error("the qemu runner takes no port option (--port)", get_runner, emu, port="/dev/ttyACM0")
    _one_line_error("unknown runner capability 'debug'", get_runner, emu, needs=("debug",))
    pyocd = get_runner(real, port="/dev/ttyACM0", probe=None)
    assert pyocd.port == "/dev/ttyACM0" and pyocd.probe is None


def test_a_run_option_needing_a_missing_capability_is_refused_before_running(tmp_path):
    """Instruction windows or exact cuts asked of pyOCD or Renode: refused at once (no probe touched, no
    Renode started), instead of a run that silently has no counts."""
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    real = load_board("nrf52840")
    _one_line_error("the pyocd runner cannot stop the firmware after an exact number of instructions",
                    get_runner(real).run, elf, limit=1000)
    _one_line_error("the renode runner cannot count instructions between two addresses (instruction_windows); "
                    "runners that can: qemu", get_runner(real, "renode").run, elf, window=(0x100, 0x200))
    _one_line_error("the renode runner cannot send input to the firmware's serial line (send)",
                    get_runner(real, "renode").run, elf, send=b"\x01")
    assert not (tmp_path / "renode").exists()


@pytest.mark.parametrize("argv,error", [
    (["bench", "{run}", "--runner", "jlink"], "unknown runner 'jlink'; the known runners are pyocd, qemu, renode"),
    (["flash", "{run}", "--board", "netduinoplus2", "--runner", "pyocd"], "board netduinoplus2 has no 'pyocd' runner"),
    (["flash", "{run}", "--board", "nrf52840", "--emulate", "--port", "/dev/ttyACM0"],
     "the qemu runner takes no port option"),
    (["flash", "{run}", "--board", "nrf52840", "--runner", "renode", "--serial-inputs"],
     "the renode runner cannot send input to the firmware's serial line (send)"),
    (["powerfail", "{run}", "--runner", "qemu"], "--runner chooses the emulated board's runner; add --emulate"),
    (["powerfail", "{run}", "--emulate", "--board", "nrf52840", "--runner", "renode"],
     "the renode runner cannot stop the firmware after an exact number of instructions (exact_cuts)"),
])
def test_cli_runner_errors_are_one_line(tmp_path, capsys, argv, error):
    """--runner on the commands that run a board: refused in one line before anything is built."""
    from tinyexit.cli import main
    assert main([a.format(run=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1, err


def test_cli_runner_overrides_the_boards_default(tmp_path, monkeypatch, capsys):
    """`tinyexit flash --board nrf52840 --runner renode RUN`: the board's default (pyOCD) is replaced by the
    runner named; a stand-in renode plays the firmware, the build is a stand-in too."""
    import tinyexit.build

    elf = fake_renode(tmp_path, monkeypatch)
    built = []
    monkeypatch.setattr(tinyexit.build, "build_run", lambda run, board, **kw: built.append(board.name) or
                        SimpleNamespace(elf=elf, sizes=SimpleNamespace(table=lambda: "sizes")))
    from tinyexit.cli import main
    assert main(["flash", "--board", "nrf52840", "--runner", "renode", "--timeout", "20", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert built == ["nrf52840"] and "running firmware.elf with renode" in out and "1 inputs: 1 correct" in out


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


FAKE_RENODE = r'''#!PYTHON
# A stand-in for `renode --console -e "include @X.resc; start"`: serves the UART socket the .resc asks for
# and plays the lines a firmware would print.
import re, socket, sys
resc = re.search(r"include @(\S+?);", sys.argv[-1]).group(1)
text = open(resc).read()
port = int(re.search(r"CreateServerSocketTerminal (\d+)", text).group(1))
elf = re.search(r"\$elf\?=@(\S+)", text).group(1)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
conn, _ = srv.accept()
conn.sendall(("TX BEGIN board=nrf52840 inputs=1 stages=seg0 exits=final unit=cycles no_exit=0\n"
              "TX R i=0 exit=0 class=1 label=1 conf=5 ticks=100 out=0105\n"
              "TX END n=1 correct=1 exits=1 ticks=100 stack=64\n" + "elf=" + elf + "\n").encode())
import time; time.sleep(30)
'''


def fake_renode(tmp_path, monkeypatch):
    """FAKE_RENODE first on PATH; returns the ELF path it will name (a stand-in file)."""
    import os
    import sys
    fake = tmp_path / "bin" / "renode"
    fake.parent.mkdir()
    fake.write_text(FAKE_RENODE.replace("#!PYTHON", "#!" + sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    return elf


def test_renode_runner_reads_the_uart_socket(tmp_path, monkeypatch):
    """With a `renode` on PATH the runner starts it on the generated .resc and reads the firmware's lines
    from the UART socket terminal the .resc creates (a stand-in renode plays the firmware here).

    The stand-in sends its lines the moment it accepts. The runner used to open the socket with pyserial's
    socket:// URL, whose open() throws away what arrived between the handshake and its end: whenever the
    stand-in's lines won that race (more often on a loaded machine) they were lost and the runner waited
    20 s for nothing. Here the runner always pauses after connecting, so the lines are always there before
    its first read: the order that used to fail is the one tested, every time."""
    from fw_helpers import late_reader

    from tinyexit.targets.app_output import parse_app_output
    late_reader(monkeypatch, 0.3)
    elf = fake_renode(tmp_path, monkeypatch)
    t0 = time.monotonic()
    r = RenodeRunner(load_board("nrf52840")).run(elf, timeout=20)
    assert time.monotonic() - t0 < 15  # stops at the TX END line, does not wait for renode to exit
    out = parse_app_output(r.output)
    assert out.results[0].output == b"\x01\x05" and r.runner == "renode"


def test_pyocd_runner_flow_with_a_stand_in_board(tmp_path, monkeypatch):
    """The real-board path without hardware: pyOCD's session and programmer are stand-ins, the board's
    serial port is a pty. The runner programs the ELF, resets, waits for READY, sends the inputs and reads
    the result lines until TX END."""
    import os
    import threading

    import pyocd.core.helpers as helpers
    import pyocd.flash.file_programmer as programmer

    master, slave = os.openpty()
    port_name = os.ttyname(slave)
    events = []
    payload = bytes(range(40))

    def board():  # what the flashed firmware does after the reset
        os.write(master, b"TX READY input_size=20\n")
        got = b""
        while len(got) < len(payload):
            got += os.read(master, 64)
        events.append(("received", got))
        os.write(master, b"TX BEGIN board=nrf52840 inputs=2 stages=seg0 exits=final unit=cycles no_exit=0\n"
                         b"TX R i=0 exit=0 class=1 label=-1 conf=9 ticks=1000 out=0109\n"
                         b"TX R i=1 exit=0 class=0 label=-1 conf=7 ticks=1001 out=0701\n"
                         b"TX END n=2 correct=0 exits=2 ticks=2001 stack=100\n")

    class Target:
        def reset(self):
            events.append(("reset",))
            threading.Thread(target=board, daemon=True).start()

    class Session:
        target = Target()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    class Programmer:
        def __init__(self, session):
            pass

        def program(self, path, file_format=None):
            events.append(("program", path, file_format))

    probe = SimpleNamespace(unique_id="000683123456", description="J-Link")
    monkeypatch.setattr(pyocd_runner, "connected_probes", lambda: [probe])
    monkeypatch.setattr(helpers.ConnectHelper, "session_with_chosen_probe",
                        staticmethod(lambda **kw: events.append(("session", kw["target_override"])) or Session()))
    monkeypatch.setattr(programmer, "FileProgrammer", Programmer)
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    runner = pyocd_runner.PyocdRunner(load_board("nrf52840"), port=port_name)
    r = runner.run(elf, timeout=10, send=payload)
    os.close(master)
    os.close(slave)
    assert [e[0] for e in events] == ["session", "program", "reset", "received"]
    assert events[0][1] == "nrf52840" and events[1][1:] == (str(elf), "elf") and events[3][1] == payload
    from tinyexit.targets.app_output import parse_app_output
    out = parse_app_output(r.output)
    assert [x.output for x in out.results] == [b"\x01\x09", b"\x07\x01"] and r.runner == "pyocd"


class _FakeBoardPort:
    """A serial port whose 'firmware' asks for three 2-byte chunks one after the other (flow control) and
    echoes each, as a real board reading a stream would: it asks for the next chunk only after the last."""

    def __init__(self):
        self.pending = bytearray(b"TX NEED 0\n")
        self.got = bytearray()
        self.asked = 1

    @property
    def in_waiting(self):
        return len(self.pending)

    def read(self, n):
        out, self.pending[:] = bytes(self.pending[:n]), self.pending[n:]
        return out

    def write(self, data):
        self.got += data
        while len(self.got) >= 2 * self.asked:
            chunk = bytes(self.got[2 * self.asked - 2:2 * self.asked])
            self.pending += b"ECHO " + chunk + b"\n"
            if self.asked == 3:
                self.pending += b"TX END\n"
                return
            self.pending += f"TX NEED {self.asked}\n".encode()
            self.asked += 1


def test_pyocd_serial_dialog_answers_each_request():
    import time

    from tinyexit.targets import Dialog
    from tinyexit.targets.pyocd_runner import read_until

    class Chunks(Dialog):
        def __init__(self):
            self.buf = b""

        def feed(self, data):
            self.buf += data
            out = b""
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(b"TX NEED "):
                    k = int(line.split()[2])
                    out += b"ab cd ef".split()[k]
            return out

    port = _FakeBoardPort()
    text = read_until(port, "TX END", time.monotonic() + 5, reply=Chunks().feed)
    assert port.got == b"abcdef"
    assert text.splitlines() == ["TX NEED 0", "ECHO ab", "TX NEED 1", "ECHO cd", "TX NEED 2", "ECHO ef", "TX END"]
