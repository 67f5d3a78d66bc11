"""Emulated campaign: the runtime as firmware on QEMU's mps2-an386, NVM in file-backed PSRAM, power cut
after exactly N instructions (the boards' plugin, limit=N)."""
from __future__ import annotations

import pytest

from tinyexit.intermittent.campaign import uninterrupted
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign
from tinyexit.intermittent.host import Granularity, HostTarget

from ._support import EMULATED, build_real_board_runtime, STANDIN_PIPELINE, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=21)


@pytest.fixture(scope="module")
def target(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("emu")
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, "mps2-an386", out)
    return EmulatedTarget(fw, out / "psram.img")


def test_emulated_run_equals_host_build(target, standin_exe, tmp_path):
    host = HostTarget(standin_exe, tmp_path / "nvm.bin")
    g = Granularity.parse("units:3")
    for j, x in enumerate(INPUTS):
        (tmp_path / "in.bin").write_bytes(x)
        want = uninterrupted(host, tmp_path / "in.bin", 1, g)
        target.erase_nvm()
        target.mailbox(j, 1, g)
        b = target.boot()
        assert b.exit_code == 0 and (b.exit_index, b.output) == (want.exit_index, want.output)
        assert b.nvm_bytes == want.nvm_bytes and b.commits == want.commits


def test_emulated_campaign_50_exact_cuts(target, tmp_path):
    report = run_emulated_campaign(target, len(INPUTS), cuts=50, seed=4, granularity=Granularity.parse("units:1"),
                                   work_dir=tmp_path / "work")
    assert report.cuts >= 50
    assert report.cuts_in_commits >= 10, "cuts must also land inside checkpoint writes"
    assert report.ok, report.table()
    assert report.instructions_per_inference > report.instructions_per_inference_baseline > 0


def test_exact_cut_is_reproducible(target):
    """The same NVM image and the same instruction count give the same NVM afterwards."""
    g = Granularity.parse("units:1")
    target.erase_nvm()
    target.mailbox(0, 7, g)
    b = target.boot(limit=300_000)
    assert b.cut and b.instructions == 300_000
    start, first = None, target.nvm_image()
    target.erase_nvm()
    target.mailbox(0, 7, g)
    target.boot(limit=300_000)
    assert target.nvm_image() == first
    del start


def test_low_energy_exit_on_the_board(target, standin_exe, tmp_path):
    """The mailbox's low-energy point (after 1 unit) makes the firmware finish at exit 0, like the host."""
    g = Granularity.parse("layers:1")
    (tmp_path / "in.bin").write_bytes(INPUTS[1])
    want = uninterrupted(HostTarget(standin_exe, tmp_path / "nvm.bin"), tmp_path / "in.bin", 1, g, low_energy_units=1)
    assert want.exit_index == 0
    target.erase_nvm()
    target.mailbox(1, 3, g, low_energy_units=1)
    b = target.boot()
    assert (b.exit_index, b.output) == (want.exit_index, want.output)


def test_runtime_builds_for_the_real_nrf52840(standin, tmp_path):
    """Runtime + board NVM adapter over the nRF52840's NVMC driver: compiles and links for the real board."""
    from tinyexit.build import build_firmware
    from tinyexit.intermittent.emulated import FIRMWARE_SOURCES, MAILBOX_BYTES
    from tinyexit.intermittent.host import RUNTIME_DIR, render_pipeline
    gen = tmp_path / "gen"
    gen.mkdir()
    render_pipeline(STANDIN_PIPELINE, gen)
    (gen / "tx_pf_inputs.c").write_text("#include <stdint.h>\nconst uint32_t tx_pf_num_inputs = 1u;\n"
                                        "const uint32_t tx_pf_input_size = 144u;\nconst int8_t tx_pf_inputs[144] = {0};\n")
    fw = build_firmware("nrf52840", [RUNTIME_DIR / s for s in FIRMWARE_SOURCES] +
                        [gen / "tx_pipeline_config.c", gen / "tx_pf_inputs.c", standin / "standin_model.c"],
                        tmp_path / "fw", include_dirs=[RUNTIME_DIR, standin, gen],
                        defines={"TX_NVM_RESERVED_TAIL": f"{MAILBOX_BYTES}u", "TX_NVM_NVMC_RULES": 1})
    assert fw.elf.exists() and fw.sizes.fits


def test_nrf52840_energy_hooks_build(standin, tmp_path):
    """The POF-comparator hooks + runtime + board NVM adapter link into a firmware for the real nRF52840."""
    fw = build_real_board_runtime("nrf52840", standin, tmp_path, "TX_CKPT_LAYERS")
    assert fw.elf.exists() and fw.sizes.fits


def test_checkpoint_overhead_table(target):
    from tinyexit.intermittent.emulated import checkpoint_overhead
    rows = checkpoint_overhead(target, ["layer", "units:1"])
    assert list(rows) == ["none", "layers:1", "units:1"] and rows["none"]["overhead"] == 0
    # more commits cost more instructions, and every granularity gives the same exit
    assert 0 < rows["layers:1"]["overhead"] < rows["units:1"]["overhead"]
    # one commit per unit: after each unit, at each stage end instead, the result instead of the last one
    assert rows["units:1"]["commits"] == 43 and len({r["exit"] for r in rows.values()}) == 1
