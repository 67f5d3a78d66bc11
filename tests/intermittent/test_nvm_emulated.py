"""The emulated nRF52840's flash: every NVMC rule trips in firmware (NVM in file-backed PSRAM, nWRITE counted
across power cycles), the NVM event log of a boot, page erases over the slot ring against a computation
written here, and a campaign with the Cortex-M4 kernels' board."""
from __future__ import annotations

import math
import struct

import pytest

from tinyexit.boards import load_board, with_nvm_region
from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots as slot_parser
from tinyexit.intermittent.emulated import (RUNNER_NEEDS, EmulatedTarget, build_emulated,
                                            nvm_defines, run_emulated_campaign)
from tinyexit.intermittent.emulated_powerfail import measure_nvm_ops
from tinyexit.intermittent.host import RUNTIME_DIR, Granularity
from tinyexit.intermittent.nvm_events import (MAILBOX_OFFSET, PSRAM_SIZE, SECONDS_PER_YEAR, measure_wear,
                                              nvm_trace, ring_period)

from ._support import EMULATED, HERE, STANDIN_PIPELINE, STANDIN_UNITS, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=21)
BOARD = load_board("nrf52840", emulate=True)


@pytest.fixture(scope="module")
def rules_fw(tmp_path_factory):
    from tinyexit.build import build_firmware
    out = tmp_path_factory.mktemp("rules_fw")
    return build_firmware(BOARD, [HERE / "nvm_rules_firmware.c", RUNTIME_DIR / "tx_nvm_board.c"], out,
                          include_dirs=[RUNTIME_DIR], defines=nvm_defines(BOARD), name="rules")


def _run_scenario(fw, psram, scenario: int):
    from tinyexit.targets import get_runner
    if not psram.exists():
        with open(psram, "wb") as f:
            f.truncate(PSRAM_SIZE)
    with open(psram, "r+b") as f:
        f.seek(MAILBOX_OFFSET)
        f.write(struct.pack("<I", scenario))
    return get_runner(BOARD, None, needs=RUNNER_NEEDS).run(fw.elf, timeout=60, memory_file=(psram, PSRAM_SIZE),
                                                          check=False)


@pytest.mark.parametrize("scenario,ok,message", [
    (0, True, ""),
    (1, True, ""),
    (2, False, "write sets bits that are 0"),
    (3, False, "not word-aligned"),
    (4, False, "not page-aligned"),
    (5, False, "more than nWRITE"),
    (6, False, "outside the NVM"),
], ids=["erase-write", "clear-bits", "write-without-erase", "unaligned-write", "unaligned-erase", "third-write",
        "outside"])
def test_nvmc_rules_in_emulated_firmware(rules_fw, tmp_path, scenario, ok, message):
    r = _run_scenario(rules_fw, tmp_path / "psram.img", scenario)
    if ok:
        assert r.exit_code == 0 and "FAULT" not in r.output, r.output
    else:
        assert r.exit_code == 3 and "FAULT NVMC rule: " in r.output and message in r.output, r.output


def test_nwrite_count_survives_a_power_cycle(rules_fw, tmp_path):
    """Two writes of a word, the power goes (QEMU ends), the next boot writes it a third time: refused."""
    psram = tmp_path / "psram.img"
    assert _run_scenario(rules_fw, psram, 7).exit_code == 0
    r = _run_scenario(rules_fw, psram, 8)
    assert r.exit_code == 3 and "more than nWRITE" in r.output, r.output


@pytest.fixture(scope="module")
def nrf(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("nrf")
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, BOARD, out)
    return EmulatedTarget(fw, out / "psram.img")


def test_runtime_without_erase_is_caught_on_the_emulated_nrf52840(standin, tmp_path):
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, BOARD, tmp_path, broken=("no-erase",))
    t = EmulatedTarget(fw, tmp_path / "psram.img")
    with pytest.raises(TinyexitError, match="NVMC rule: write sets bits that are 0"):
        t.uninterrupted(0, 1, Granularity.parse("layers:1"))


def test_nvm_events_of_one_boot(nrf):
    """units:1 commits once per work unit (the stand-in's 43, the result record instead of the last): the slot of
    the first commit is prepared (erased) before the walk, the second (the other slot of a blank NVM) reads erased,
    every later commit erases its one-page slot; each writes header, payload and CRC word; the words logged are the
    bytes the runtime counts but the LOW_MARK word and the words equal to 0xFFFFFFFF (not programmed), and the
    NVMC time follows the board file's tERASEPAGE and tWRITE."""
    trace = nvm_trace(nrf, 0, Granularity.parse("units:1"))
    b = nrf.uninterrupted(0, 1, Granularity.parse("units:1"))
    kinds = [e.kind for e in trace.events]
    assert kinds.count("commit_begin") == kinds.count("commit_end") == STANDIN_UNITS == b.commits
    assert trace.erases == STANDIN_UNITS - 1 == b.stats["erases"] + b.stats["prepared"] and kinds[-1] == "result"
    assert b.stats["skipped"] == 2 and b.stats["prepared"] == 1 and kinds.index("erase") < kinds.index("commit_begin")
    # the runtime counts the 64-byte header; its LOW_MARK word stays erased (not written) at a commit
    assert 0.9 * (b.nvm_bytes - 4 * b.commits) <= 4 * trace.words_written <= b.nvm_bytes - 4 * b.commits
    counts = [e.instructions for e in trace.events]
    assert counts == sorted(counts) and 0 < counts[0] and counts[-1] <= trace.instructions == b.instructions
    assert trace.resolution == 40
    # each commit's erase lies between its begin and end marks
    begin = [e.instructions for e in trace.events if e.kind == "commit_begin"]
    erase = [e.instructions for e in trace.events if e.kind == "erase"]
    end = [e.instructions for e in trace.events if e.kind == "commit_end"]
    assert all(a <= x <= c for a, x, c in zip(begin[2:], erase[1:], end[2:]))
    want = (STANDIN_UNITS - 1) * 85e-3 + trace.words_written * 41e-6
    assert trace.nvm_seconds() == pytest.approx(want)


@pytest.mark.parametrize("region_pages", [None, 5])
def test_wear_over_the_slot_ring(standin, tmp_path, region_pages):
    """Page erases per inference against a computation written here: a stand-in slot is one page, an inference
    commits C = 43 times (units:1), each commit erases its slot's page, and consecutive commits go round the ring
    of N slots; over N / gcd(C, N) inferences every page is erased equally, C / N times per inference. With a
    region of 5 pages the runtime fits 5 slots; the lifetime at 1 Hz is 10,000 cycles over the worst page."""
    board = BOARD if region_pages is None else with_nvm_region(BOARD, region_pages * 4096)
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, board, tmp_path, slots=2 if region_pages is None else "fit")
    t = EmulatedTarget(fw, tmp_path / "psram.img")
    n = 2 if region_pages is None else region_pages
    c = STANDIN_UNITS
    wear = measure_wear(t, Granularity.parse("units:1"))
    assert wear.slots == n and wear.inferences == n // math.gcd(c, n) == ring_period(c, n) and wear.exact_period
    assert wear.erases_per_page[:n] == [c * wear.inferences // n] * n and not any(wear.erases_per_page[n:])
    assert wear.erases_per_inference == pytest.approx(c)
    assert wear.max_erases_per_page_per_inference == pytest.approx(c / n)
    assert wear.lifetime_years(1.0) == pytest.approx(10_000 / (c / n * 365.25 * 24 * 3600))
    assert wear.lifetime_years(0.5) == pytest.approx(2 * wear.lifetime_years(1.0))
    # the ring turned: every slot holds a valid checkpoint, with consecutive sequence numbers
    recs = [slot_parser.read_slot(t.nvm_image(), s, t.slot_size) for s in range(n)]
    assert all(recs) and sorted(r.seq for r in recs) == list(range(min(r.seq for r in recs),
                                                                    min(r.seq for r in recs) + n))
    assert SECONDS_PER_YEAR == 365.25 * 24 * 3600


def test_campaign_on_the_emulated_nrf52840(nrf, tmp_path):
    report = run_emulated_campaign(nrf, len(INPUTS), cuts=30, seed=3, granularity=Granularity.parse("units:2"),
                                   work_dir=tmp_path / "work")
    assert report.ok and report.cuts >= 30 and report.cuts_in_commits >= 5, report.table()
    measure_nvm_ops(nrf, report, len(INPUTS))
    assert 0 < report.nvm_op_instructions_per_inference < report.instructions_per_inference
    cpu, base = report.cpu_instructions
    assert 0 < base < cpu < report.instructions_per_inference


def test_campaign_over_a_log(standin, tmp_path):
    """A region of 5 one-page slots is a log (TX_CKPT_SLOTS 0): the campaign's cuts, half aimed inside commits
    (counted from the firmware's event log), leave every committed result right."""
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, with_nvm_region(BOARD, 5 * 4096), tmp_path, slots="fit")
    t = EmulatedTarget(fw, tmp_path / "psram.img")
    report = run_emulated_campaign(t, len(INPUTS), cuts=30, seed=5, granularity=Granularity.parse("units:2"))
    assert t.log and t.num_slots == 5
    assert report.ok and report.cuts >= 30 and report.cuts_in_commits >= 5, report.table()
