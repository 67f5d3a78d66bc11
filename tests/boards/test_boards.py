"""Board files: the shipped boards load; every invalid fixture (one per schema/semantic rule) is refused
with the message its first line announces (`# expect: ...`)."""
from pathlib import Path

import pytest

from tinyexit.boards import BoardError, available_boards, load_board, load_board_file

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def test_shipped_boards_load():
    assert {"nrf52840", "mps2-an386", "netduinoplus2"} <= set(available_boards())
    for name in available_boards():
        b = load_board(name)
        assert b.name == name
        assert b.code_flash.size > 0 and b.ram.size > b.stack_size


def test_nrf52840_real_and_emulated():
    real = load_board("nrf52840")
    emu = load_board("nrf52840", emulate=True)
    assert (real.flash, real.ram) == (emu.flash, emu.ram)  # same memory budget
    assert real.flash.size == 1 << 20 and real.ram.size == 256 << 10 and real.ram.origin == 0x20000000
    assert real.uart.driver == "nrf_uarte" and emu.uart.driver == "cmsdk_apb"
    assert real.nvm.driver == "nrf_nvmc" and emu.nvm.driver == "flash_sim" and real.nvm.page_size == 4096
    assert real.code_flash.size == (1 << 20) - 64 * 1024  # NVM pages are not image flash
    assert real.default_runner == "pyocd" and emu.default_runner == "qemu"
    assert real.pyocd_target == "nrf52840" and emu.qemu_machine == "mps2-an386"
    assert emu.variant == "nrf52840-qemu" and real.variant == "nrf52840"


def test_other_memory_map():
    b = load_board("netduinoplus2")
    assert b.flash.origin == 0x08000000 and b.uart.driver == "stm32_usart" and b.emulated


def test_board_that_cannot_be_emulated(tmp_path):
    text = (Path(load_board("nrf52840").path)).read_text().replace("runners: [pyocd, qemu, renode]",
                                                                   "runners: [pyocd, renode]")
    f = tmp_path / "nrf52840.yaml"
    f.write_text(text)
    load_board_file(f)
    with pytest.raises(BoardError, match="cannot be emulated"):
        load_board_file(f, emulate=True)


def test_unknown_board_names_known_ones():
    with pytest.raises(BoardError, match="Known boards: .*nrf52840"):
        load_board("nrf52841")


@pytest.mark.parametrize("fixture", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_board_refused(fixture):
    expect = fixture.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(BoardError) as exc:
        load_board_file(fixture)
    msg = str(exc.value)
    assert expect in msg
    assert str(fixture) in msg  # names the file


def test_kernel_variant_follows_the_core(tmp_path):
    """DSP-extension kernels only where the core has SMLAD/SXTB16 (Cortex-M4); a Cortex-M3 gets the portable ones."""
    assert load_board("nrf52840").kernels == "cortex_m4" and load_board("nrf52840", emulate=True).kernels == "cortex_m4"
    f = tmp_path / "nrf52840.yaml"
    f.write_text(Path(load_board("nrf52840").path).read_text().replace("core: cortex-m4f", "core: cortex-m3"))
    assert load_board_file(f).kernels == "reference"


def test_energy_section_in_si_units():
    """The nRF52840's energy: section read in SI units; the emulated variant keeps it; boards without one have
    None (the section is optional)."""
    e = load_board("nrf52840").energy
    assert e.run_current_a == pytest.approx(3.3e-3) and e.supply_v == 3.0
    assert (e.erase_current_a, e.write_current_a) == (pytest.approx(4e-3), pytest.approx(4e-3))
    assert (e.warn_min_v, e.warn_max_v, e.warn_step_v) == (1.7, 2.8, pytest.approx(0.1))
    assert e.off_v < e.warn_v < e.on_v <= e.max_v and e.capacitor_f == pytest.approx(470e-6)
    assert load_board("nrf52840", emulate=True).energy == e
    assert load_board("mps2-an386").energy is None


def test_run_current_per_mhz_scales_with_the_clock(tmp_path):
    f = tmp_path / "nrf52840.yaml"
    f.write_text(Path(load_board("nrf52840").path).read_text().replace("run_current: 3.3mA", "run_current_per_mhz: 50uA"))
    assert load_board_file(f).energy.run_current_a == pytest.approx(50e-6 * 64)


def test_nrf52840_flash_figures_and_emulated_nvm():
    """The emulated nRF52840 keeps its NVM in QEMU's PSRAM (a file can back it) with the flash's endurance and
    timing from memory.nvm, and the image keeps the real board's flash budget."""
    real, emu = load_board("nrf52840"), load_board("nrf52840", emulate=True)
    assert emu.nvm.origin == 0x21000000 and emu.nvm.size == real.nvm.size and emu.flash_nvm == real.nvm
    for b in (real, emu):
        assert (b.nvm.endurance, b.nvm.erase_page_s, b.nvm.write_word_s, b.nvm.max_writes_per_word) == \
            (10_000, 85e-3, 41e-6, 2)
    assert emu.code_flash == real.code_flash
    assert load_board("mps2-an386").nvm.endurance is None


def test_nvm_region_override():
    from tinyexit.boards import with_nvm_region
    emu = load_board("nrf52840", emulate=True)
    big = with_nvm_region(emu, 256 * 1024)
    assert big.nvm.size == 256 * 1024 and big.nvm.origin == emu.nvm.origin
    assert big.flash_nvm.origin == (1 << 20) - 256 * 1024 and big.code_flash.size == (1 << 20) - 256 * 1024
    real = with_nvm_region(load_board("nrf52840"), 128 * 1024)
    assert real.nvm.origin == (1 << 20) - 128 * 1024 and real.real_nvm is None
    for bad in (4096, 5000, 1 << 20):
        with pytest.raises(BoardError):
            with_nvm_region(emu, bad)
