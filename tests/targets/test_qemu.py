"""Emulated runs: serial readback over a real channel, output equal to the host build of the same C,
hangs stopped by the timeout, faults and failing exit statuses reported, missing QEMU reported."""
import subprocess
import time

import pytest
from fw_helpers import firmware, host, toy_app

from tinyexit.boards import load_board
from tinyexit.errors import MissingToolError
from tinyexit.targets import FirmwareFaultError, FirmwareTimeoutError, get_runner
from tinyexit.targets.app_output import parse_app_output

pytestmark = pytest.mark.emulator


@pytest.mark.parametrize("board", ["nrf52840", "netduinoplus2", "mps2-an386"])
def test_emulated_output_equals_host_build(tmp_path, need_emulator, board):
    sources, incs, (x, y) = toy_app(tmp_path, n=20, seed=1)
    fw = firmware(tmp_path, board, sources, include_dirs=incs)
    emu = parse_app_output(get_runner(fw.board, "qemu").run(fw.elf, timeout=30).output)
    exe = host(tmp_path, sources, incs)
    ref = parse_app_output(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)
    assert emu.board == board and ref.board == "host"
    assert len(emu.results) == 20
    assert emu.decisions() == ref.decisions()
    assert [r.label for r in emu.results] == [int(v) for v in y]
    assert emu.summary["exits"] == ref.summary["exits"]
    assert 0 < emu.summary["exits"][0] < 20  # the toy threshold makes both exits happen
    assert 0 < emu.summary["stack"] < fw.board.stack_size and ref.summary["stack"] == 0
    # ticks: the stages that ran have ticks on the board, none of the skipped ones
    for r in emu.results:
        assert (r.ticks[2] is None) == (r.exit == 0)
        assert r.ticks[0] > 0


def test_serial_inputs(tmp_path, need_emulator):
    """Inputs sent over the emulated UART give the same results as the host build fed on stdin."""
    sources, incs, (x, _) = toy_app(tmp_path, n=5, seed=2)
    defines = {"TX_APP_SERIAL_INPUTS": 1}
    fw = firmware(tmp_path, "nrf52840", sources, include_dirs=incs, defines=defines)
    payload = len(x).to_bytes(4, "little") + x.tobytes()
    emu = parse_app_output(get_runner(fw.board, "qemu").run(fw.elf, send=payload, timeout=30).output)
    exe = host(tmp_path, sources, incs, defines=defines)
    ref = parse_app_output(subprocess.run([exe], input=payload, capture_output=True, check=True).stdout.decode())
    assert emu.decisions() == ref.decisions() and len(emu.results) == 5
    assert all(r.label == -1 for r in emu.results)


def _tiny(tmp_path, body, board="nrf52840"):
    src = tmp_path / "tiny.c"
    src.write_text('#include <stdint.h>\n#include "tx_hal.h"\nint main(void)\n{\n' + body + "\n}\n")
    return firmware(tmp_path, board, [src])


def test_hang_is_stopped_by_timeout(tmp_path, need_emulator):
    fw = _tiny(tmp_path, 'tx_hal_puts("spinning\\n");\n  for (;;) {}\n  return 0;')
    t0 = time.monotonic()
    with pytest.raises(FirmwareTimeoutError) as exc:
        get_runner(fw.board, "qemu").run(fw.elf, timeout=2.0)
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    assert "did not finish within 2 s" in msg and "spinning" in msg and "raise the timeout" in msg


def test_fault_is_reported(tmp_path, need_emulator):
    # An undefined instruction: UsageFault escalated to HardFault -> FAULT line -> exit status 3.
    fw = _tiny(tmp_path, 'tx_hal_puts("before\\n");\n  __asm__ volatile(".short 0xde00");\n  return 0;')
    with pytest.raises(FirmwareFaultError, match=r"faulted: FAULT exception=0x00000003 pc=0x"):
        get_runner(fw.board, "qemu").run(fw.elf, timeout=10)
    r = get_runner(fw.board, "qemu").run(fw.elf, timeout=10, check=False)
    assert r.exit_code == 3 and "before" in r.output


def test_failing_exit_status_is_reported(tmp_path, need_emulator):
    fw = _tiny(tmp_path, 'tx_hal_puts("bad\\n");\n  return 5;', board="netduinoplus2")
    with pytest.raises(FirmwareFaultError, match="ended with status 5"):
        get_runner(fw.board, "qemu").run(fw.elf, timeout=10)


def test_missing_qemu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    elf = tmp_path / "x.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(MissingToolError, match="apt-get install -y --no-install-recommends qemu-system-arm"):
        get_runner(load_board("nrf52840", emulate=True), "qemu").run(elf)


def test_qemu_start_failure_is_reported(tmp_path, need_emulator):
    import dataclasses

    from tinyexit.errors import TinyexitError
    fw = _tiny(tmp_path, "return 0;")
    board = dataclasses.replace(fw.board, qemu_machine="no-such-machine")
    with pytest.raises(TinyexitError, match="QEMU could not run .*unsupported machine type"):
        get_runner(board, "qemu").run(fw.elf, timeout=10)


def test_stack_high_water_mark(tmp_path, need_emulator):
    """tx_hal_stack_used() sees a 3000-byte local array (the stack is painted at reset)."""
    body = r"""
  volatile uint8_t big[3000];
  for (uint32_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
  uint32_t used = tx_hal_stack_used();
  char b[12]; int n = 0;
  do { b[n++] = (char)('0' + used % 10u); used /= 10u; } while (used);
  while (n) tx_hal_putc(b[--n]);
  tx_hal_putc('\n');
  return big[7] == 7 ? 0 : 1;"""
    fw = _tiny(tmp_path, body)
    used = int(get_runner(fw.board, "qemu").run(fw.elf).lines[-1])
    assert 3000 <= used < 3300
