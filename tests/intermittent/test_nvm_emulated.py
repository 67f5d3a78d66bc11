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
from tinyexit.intermittent.nvm_events import (MAILBOX_OFFSET, PSRAM_SIZE, SECONDS_PER_YEAR, SHADOW_OFFSET, WRITES,
                                              measure_wear, nvm_trace, ring_period)

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


def test_wear_over_the_slot_ring(standin, tmp_path):
    """Page erases per inference against a computation written here: a stand-in slot is one page, an inference
    commits C = 43 times (units:1), each commit erases its slot's page, and consecutive commits go round the ring
    of N = 2 slots; over N / gcd(C, N) inferences every page is erased equally, C / N times per inference; the
    lifetime at 1 Hz is 10,000 cycles over the worst page."""
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, BOARD, tmp_path, slots=2)
    t = EmulatedTarget(fw, tmp_path / "psram.img")
    n = 2
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


def _log_target(standin, tmp_path, pages: int = 5) -> EmulatedTarget:
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, with_nvm_region(BOARD, pages * 4096), tmp_path, slots="fit")
    return EmulatedTarget(fw, tmp_path / "psram.img")


def test_wear_of_a_log_under_continuous_power(standin, tmp_path):
    """A region of 5 pages is a log; one boot runs consecutive inferences (continuous power) on a flash whose pages
    all hold data. With units:1 each of an inference's C - 1 = 42 checkpoint records starts a page (each fits one)
    and its result, a packed record of 12 + 8 + 4 bytes, follows the last one inside that page: 42 page erases per
    inference, spread over all 5 pages (the largest record is one page: no slack at the wrap). With granularity
    none the results alone fill a page every 4096 // 24 = 170 inferences: one erase per 170 (measured between page
    entries); the region for 10 years at 1 Hz follows from that rate."""
    t = _log_target(standin, tmp_path)
    b = t.uninterrupted(0, 9, Granularity.parse("units:1"))
    assert b.log and b.commits == STANDIN_UNITS and 64 + b.stats["max_payload"] + 24 <= 4096
    wear = measure_wear(t, Granularity.parse("units:1"))
    c = STANDIN_UNITS - 1
    assert wear.log and wear.inferences >= 2 and wear.largest_pages == 1
    assert wear.steady_erases == c * wear.inferences and wear.spread_pages == 5
    assert wear.max_erases_per_page_per_inference == pytest.approx(c / 5)
    assert wear.lifetime_years(1.0) == pytest.approx(10_000 / (c / 5 * 365.25 * 24 * 3600))
    res = measure_wear(t, Granularity("none"))
    per_page = 4096 // slot_parser.pack_bytes(5)
    assert per_page == 170 and res.steady_erases >= 6 and res.steady_erases * per_page == res.inferences
    need = math.ceil(res.steady_erases / res.inferences * 365.25 * 24 * 3600 * 10 / 10_000)
    assert res.region_bytes_for(10.0, 1.0) == need * 4096
    assert res.lifetime_years(1.0) == pytest.approx(10_000 * 5 / (res.steady_erases / res.inferences * SECONDS_PER_YEAR))


@pytest.mark.parametrize("half", [False, True], ids=["erased-tail", "half-programmed-word"])
def test_packed_record_torn_at_every_word(standin, tmp_path, half):
    """One boot of four inferences packs their result records (24 bytes each) one after the other in page 0. The
    fourth record torn after each of its words (the word being written when the power went still erased, or half
    programmed: its upper half still 1s) is ignored by the runtime and by the parser, and the torn words are never
    written again: every word after the third record is counted twice by the NVMC's nWRITE (as if two earlier boots
    had been cut writing it), so a third write would be an NVMC fault. The next boot recomputes the fourth input,
    starts page 1 with its record, and packs a fifth inference's record after it."""
    t = _log_target(standin, tmp_path)
    none = Granularity("none")
    t.erase_nvm()
    t.mailbox(0, 1, none, count=4)
    assert t.boot().exit_code == 0
    fp, full = t.fingerprint, t.nvm_image()
    size = slot_parser.pack_bytes(5)
    recs = sorted(slot_parser.log_records(full, fp), key=lambda r: r.seq)
    assert [(r.input_id, r.offset, r.packed, r.done) for r in recs] == [(k + 1, k * size, True, True) for k in range(4)]
    want, start = recs[3].payload, 3 * size
    for k in range(size // 4 + 1):                       # k words of the fourth record written
        image = bytearray(full)
        image[start + 4 * k: start + size] = b"\xff" * (size - 4 * k)
        if half and k < size // 4:
            word = struct.unpack_from("<I", full, start + 4 * k)[0] | 0xFFFF0000
            struct.pack_into("<I", image, start + 4 * k, word)
        t.set_nvm_image(bytes(image))
        counts = bytes([1] * (start // 4 + k)) + bytes([2] * (1024 - start // 4 - k))   # page 0's nWRITE state
        with open(t.psram, "r+b") as f:
            f.seek(SHADOW_OFFSET + WRITES)
            f.write(counts)
        torn = k < size // 4
        assert slot_parser.newest_valid(bytes(image), 4096, 5, True, fp).input_id == (3 if torn else 4)
        t.mailbox(0, 4, none, count=2)                     # the fourth input again (its result was not durable), a fifth
        b = t.boot()
        assert b.exit_code == 0 and "FAULT" not in b.text, b.text
        after = sorted(slot_parser.log_records(t.nvm_image(), fp), key=lambda r: r.seq)
        assert after[:3] == recs[:3] and after[-1].input_id == 5 and after[-1].payload == b.output
        if torn:   # recomputed, on a new page: page 1 starts with it, the fifth packs after it
            assert [(r.input_id, r.offset, r.payload) for r in after[3:]] == [(4, 4096, want), (5, 4096 + size, b.output)]
        else:      # committed: returned without a new record; the boot's first commit (the fifth) starts page 1
            assert [(r.input_id, r.offset) for r in after[3:]] == [(4, start), (5, 4096)]


def test_packing_into_a_torn_tail_is_an_nvmc_fault(standin, tmp_path):
    """The check above can fail: a runtime whose boots pack their first result right after the newest record
    (TX_BROKEN_PACK_FRESH) writes a word a torn commit may have counted twice, a third write: an NVMC fault."""
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, with_nvm_region(BOARD, 5 * 4096), tmp_path,
                        slots="fit", broken=("pack-fresh",))
    t = EmulatedTarget(fw, tmp_path / "psram.img")
    t.erase_nvm()
    t.mailbox(0, 1, Granularity("none"), count=3)
    assert t.boot().exit_code == 0
    end = 3 * slot_parser.pack_bytes(5)
    with open(t.psram, "r+b") as f:                     # every word after the third record: counted twice
        f.seek(SHADOW_OFFSET + WRITES + end // 4)
        f.write(bytes([2] * (1024 - end // 4)))
    t.mailbox(0, 4, Granularity("none"))
    b = t.boot()
    assert b.exit_code == 3 and "more than nWRITE" in b.text, b.text


def test_campaign_cuts_inside_packed_commits(standin, tmp_path):
    """Granularity none with a warm-up inference per boot: the campaign's result records are packed after the
    warm-up's inside a page, and half the cuts are aimed inside the commits (both records): every committed result
    right, no checkpoint lost, no NVMC rule broken (a crash)."""
    t = _log_target(standin, tmp_path)
    report = run_emulated_campaign(t, len(INPUTS), cuts=30, seed=11, granularity=Granularity("none"), warmup=True,
                                   work_dir=tmp_path / "work")
    assert report.ok and report.cuts >= 30 and report.cuts_in_commits >= 10, report.table()
    assert any(r.offset % 4096 for r in slot_parser.log_records(t.nvm_image(), t.fingerprint) if r.packed)


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
