"""Cross builds: sizes against the board budget, refusal with sizes when an image does not fit, the real
nRF52840 HAL (UARTE0, DWT, NVMC) compiles, NVM drivers keep flash rules."""
import json

import pytest
from fw_helpers import firmware, toy_app

from tinyexit.boards import load_board
from tinyexit.build import ImageTooBigError, build_firmware, render_board_support
from tinyexit.targets import get_runner


def _src(tmp_path, text, name="big.c"):
    p = tmp_path / name
    p.write_text('#include <stdint.h>\n#include "tx_hal.h"\n' + text)
    return p


def test_too_big_flash_refused_with_sizes(tmp_path, need_cross):
    src = _src(tmp_path, "const uint8_t weights[1100000] = {1};\n"
                         "int main(void) { return weights[(uint32_t)tx_hal_ticks() % sizeof weights]; }\n")
    with pytest.raises(ImageTooBigError) as exc:
        build_firmware("nrf52840", [src], tmp_path / "out", emulate=True)
    msg = str(exc.value)
    assert "does not fit nrf52840" in msg and "flash needs 1,10" in msg and "983,040 B" in msg
    sizes = json.loads((tmp_path / "out" / "size.json").read_text())
    assert sizes["flash_rodata"] >= 1100000 and not sizes["fits"]
    assert not (tmp_path / "out" / "firmware.elf").exists()
    # the same image fits the emulator board with 4 MiB of code memory
    fw = build_firmware("mps2-an386", [src], tmp_path / "out2")
    assert fw.sizes.flash_rodata >= 1100000 and fw.sizes.fits


def test_too_big_ram_refused_with_sizes(tmp_path, need_cross):
    src = _src(tmp_path, "static uint8_t buf[300000];\n"
                         "int main(void) { buf[tx_hal_ticks() % sizeof buf] = 1; return buf[7]; }\n")
    small = _src(tmp_path, "int main(void) { return 0; }\n", "small.c")
    build_firmware("nrf52840", [small], tmp_path / "out")
    assert (tmp_path / "out" / "firmware.elf").exists()
    with pytest.raises(ImageTooBigError, match=r"RAM needs 30\d,\d\d\d B but nrf52840 has 262,144 B"):
        build_firmware("nrf52840", [src], tmp_path / "out")
    assert not (tmp_path / "out" / "firmware.elf").exists()  # the older image is gone


def test_size_report_counts_weights_and_arena(tmp_path, need_cross):
    sources, incs, _ = toy_app(tmp_path)
    fw = firmware(tmp_path, "nrf52840", sources, include_dirs=incs, weight_sources=[sources[-1]])
    s = fw.sizes
    assert s.arena == 64 and s.ram_stack == 8192 and s.flash_budget == 1024 * 1024 - 64 * 1024
    assert s.flash == s.flash_code + s.flash_rodata + s.flash_data_init
    assert s.ram == s.ram_data + s.ram_bss + s.ram_stack and s.ram_bss >= 64


def test_real_nrf52840_build(tmp_path, need_cross):
    """The real board's variant (UARTE0, DWT cycle counter, NVMC, halt) cross-compiles warning-free."""
    sources, incs, _ = toy_app(tmp_path)
    fw = build_firmware("nrf52840", sources, tmp_path / "real", include_dirs=incs)
    hal = (tmp_path / "real" / "board" / "tx_hal.c").read_text()
    assert "0x40002000" in hal and "0x4001E000" in hal and "0xE0001004" in hal and "bkpt" not in hal
    assert fw.sizes.fits and not fw.board.emulated


def test_linker_script_from_board(tmp_path):
    render_board_support(load_board("netduinoplus2"), tmp_path)
    ld = (tmp_path / "link.ld").read_text()
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in ld and "ORIGIN = 0x20000000, LENGTH = 114688" in ld
    assert "__nvm_start = 0x2001c000;" in ld and "NOLOAD" not in ld.split("SECTIONS")[0]
    render_board_support(load_board("nrf52840"), tmp_path / "n")
    ld = (tmp_path / "n" / "link.ld").read_text()
    assert "LENGTH = 983040" in ld and "__nvm_start = 0x000f0000;" in ld and "__nvm_page_size = 4096;" in ld


NVM = r'''
static void put_hex(uint32_t v) { const char *d = "0123456789abcdef"; for (int s = 28; s >= 0; s -= 4) tx_hal_putc(d[(v >> s) & 15u]); tx_hal_putc('\n'); }
int main(void)
{
  const uint32_t *w = (const uint32_t *)tx_hal_nvm();
  uint32_t last = tx_hal_nvm_size() - tx_hal_nvm_page_size();
  if (tx_hal_nvm_erase_page(last)) return 9;
  put_hex(w[last / 4]);
  uint32_t a = 0x12345678u, b = 0xFFFF00FFu;
  tx_hal_nvm_write(last, &a, 4);
  tx_hal_nvm_write(last, &b, 4);
  put_hex(w[last / 4]);
  put_hex((uint32_t)tx_hal_nvm_write(1, &a, 4));
  return 0;
}
'''


@pytest.mark.emulator
@pytest.mark.parametrize("board,second", [("nrf52840", "12340078"),   # flash_sim: writes only clear bits
                                          ("netduinoplus2", "ffff00ff")])  # ram: plain writes
def test_nvm_driver_rules(tmp_path, need_emulator, board, second):
    fw = firmware(tmp_path, board, [_src(tmp_path, NVM, "nvm.c")])
    lines = get_runner(fw.board, "qemu").run(fw.elf).lines
    assert lines == ["ffffffff", second, "ffffffff"]


def test_build_cli_errors_are_clear(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "tinyexit", "build", "--board", "nrf52841", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown board 'nrf52841'" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "tinyexit", "build", "--board", "nrf52840", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "tinyexit quantize" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("board,flash_origin", [("nrf52840", 0x0), ("netduinoplus2", 0x08000000)])
def test_vector_table(tmp_path, need_cross, board, flash_origin):
    """The image starts with the vector table at the flash origin: initial SP = top of the stack inside
    RAM (8-aligned), reset and fault vectors are Thumb addresses of the right functions."""
    import struct
    import subprocess

    from tinyexit.toolchain import symbol_address, tool
    fw = build_firmware(board, [_src(tmp_path, "int main(void) { return 0; }\n", "m.c")], tmp_path / "o")
    out = subprocess.run([tool("arm-none-eabi-objdump"), "-h", str(fw.elf)], capture_output=True, text=True).stdout
    vma = [int(line.split()[3], 16) for line in out.splitlines() if " .isr_vector " in line]
    assert vma == [flash_origin]
    binf = tmp_path / "vec.bin"
    subprocess.run([tool("arm-none-eabi-objcopy"), "-O", "binary", "-j", ".isr_vector", str(fw.elf), str(binf)],
                   check=True)
    sp, reset, nmi, hardfault = struct.unpack("<4I", binf.read_bytes()[:16])
    b = fw.board
    assert b.ram.origin < sp <= b.ram.end and sp % 8 == 0
    assert sp == symbol_address(fw.elf, "__stack_top")
    assert reset == symbol_address(fw.elf, "Reset_Handler") | 1
    assert hardfault == symbol_address(fw.elf, "HardFault_Handler") | 1 and nmi & 1
