"""An external SPI FRAM as the NVM (boards/nrf52840-fram.yaml): byte writes, no erase. The board file, the energy
model's FRAM times, the real board's SPIM driver compiled (not run: no hardware here), and campaigns on the
emulated board (the FRAM in file-backed PSRAM without NVMC rules): no erase ever, 0 wrong results, just-in-time
checkpoints included."""
from __future__ import annotations

import pytest

from tinyexit.boards import load_board
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign
from tinyexit.intermittent.energy import EnergyModel
from tinyexit.intermittent.host import Granularity
from tinyexit.intermittent.nvm_events import nvm_defines, nvm_trace

from ._support import EMULATED, build_real_board_runtime, STANDIN_PIPELINE, STANDIN_UNITS, random_inputs

INPUTS = random_inputs(2, 144, seed=29)


def test_fram_board_file():
    real, emu = load_board("nrf52840-fram"), load_board("nrf52840-fram", emulate=True)
    assert real.nvm.driver == "spi_fram" and not real.nvm.erases and not real.nvm.mapped
    assert real.code_flash == real.flash          # the FRAM takes no flash from the image
    assert emu.nvm.origin == 0x21000000 and emu.flash_nvm == real.nvm and emu.nvm.write_byte_s == 0.25e-6
    m = EnergyModel.from_board(real)
    assert (m.erase_s, m.erase_w) == (0.0, 0.0)
    assert m.write_s == pytest.approx(4 * 0.25e-6) and m.write_w == pytest.approx(5.8e-3 * 3.0)
    d = nvm_defines(emu)
    assert d["TX_NVM_ERASE"] == 0 and "TX_NVM_NVMC_RULES" not in d
    # the flash board keeps its NVMC rules, and its times come from memory.nvm
    flash = load_board("nrf52840", emulate=True)
    assert "TX_NVM_NVMC_RULES" in nvm_defines(flash) and "TX_NVM_ERASE" not in nvm_defines(flash)
    assert (EnergyModel.from_board(flash).erase_s, EnergyModel.from_board(flash).write_s) == (85e-3, 41e-6)


@pytest.mark.skipif(not __import__("shutil").which("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")
def test_real_fram_board_firmware_builds(standin, tmp_path):
    """The runtime without erase + the board NVM layer over the SPIM FRAM driver link for the real board."""
    fw = build_real_board_runtime("nrf52840-fram", standin, tmp_path, "TX_CKPT_NONE | TX_CKPT_JIT",
                                  {"TX_NVM_ERASE": 0})
    assert fw.elf.exists() and fw.sizes.fits


@pytest.fixture(scope="module")
def fram(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("fram")
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, load_board("nrf52840-fram", emulate=True), out)
    return EmulatedTarget(fw, out / "psram.img")


@EMULATED[0]
@EMULATED[1]
def test_fram_commits_write_in_place_without_erase(fram):
    """units:1 commits 43 times, into slots that hold older records (FRAM is never erased): no erase event, and
    every word of every record written (0xFFFFFFFF words too); the NVM time is the words' byte time."""
    g = Granularity.parse("units:1")
    fram.uninterrupted(0, 1, g)
    trace = nvm_trace(fram, 0, g)
    b = fram.uninterrupted(0, 2, g)
    assert b.commits == STANDIN_UNITS and trace.erases == 0 and b.stats["erases"] == b.stats["prepared"] == 0
    # header without CRC + LOW_MARK, payload, CRC, and the CRC word invalidated first: 4 bytes more per commit
    assert 4 * trace.words_written == b.nvm_bytes + 4 * b.commits
    assert trace.nvm_seconds() == pytest.approx(trace.words_written * 4 * 0.25e-6)


@EMULATED[0]
@EMULATED[1]
@pytest.mark.parametrize("gran,warn", [("units:2", 0.0), ("jit", 0.5)])
def test_fram_campaign_zero_wrong(fram, tmp_path, gran, warn):
    report = run_emulated_campaign(fram, len(INPUTS), cuts=20, seed=6, granularity=Granularity.parse(gran), warn=warn,
                                   work_dir=tmp_path / "work")
    assert report.cuts >= 20 and report.cuts_in_commits >= 4, report.table()
    assert report.ok, report.table()
