"""Deferred results (TX_CKPT_DEFER_RESULTS with just-in-time checkpoints, tx_checkpoint.h) on the emulated nRF52840
over a log: on continuous power a boot of many inferences writes no record until the power warning of its end;
under cuts after warnings (half inside commits, the deferred commit included) no result is wrong or lost, and a
result is delivered again only after a cut between its delivery and the end of its record (outside the contract)."""
from __future__ import annotations

import pytest

from tinyexit.boards import load_board, with_nvm_region
from tinyexit.intermittent import slots
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign
from tinyexit.intermittent.host import Granularity
from tinyexit.intermittent.nvm_events import measure_wear, read_events

from ._support import EMULATED, STANDIN_PIPELINE, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=29)
JIT = Granularity.parse("jit")
PAGES = 5


@pytest.fixture
def nrf(standin, tmp_path):
    board = with_nvm_region(load_board("nrf52840", emulate=True), PAGES * 4096)
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, board, tmp_path, slots="fit", defer_results=True)
    return EmulatedTarget(fw, tmp_path / "psram.img")


def test_continuous_power_writes_only_at_the_warning(nrf):
    """50 inferences in one boot: after the first result nothing is erased or written until the last result; then
    the warning of the boot's end commits the last result alone (one packed record). The next power-up finds that
    input done (not recomputed)."""
    nrf.erase_nvm()
    nrf.mailbox(0, 1, JIT, count=50)
    b = nrf.boot()
    assert b.exit_code == 0 and b.stats["deferred"] == 1 and b.commits == 1, b.text
    kinds = [e.kind for e in read_events(nrf.psram, tick_origin=0, instructions_per_tick=1)]
    results = [k for k, e in enumerate(kinds) if e == "result"]
    assert len(results) == 50
    assert not any(e in ("erase", "write", "commit_begin") for e in kinds[results[0]:results[-1]])
    assert kinds[results[-1]:].count("commit_begin") == 1 and "write" in kinds[results[-1]:]
    rec = slots.newest_valid(nrf.nvm_image(), 4096, PAGES, True, nrf.fingerprint)
    assert rec.done and rec.packed and rec.input_id == 50 and rec.payload == b.output
    nrf.mailbox(0, 50, JIT)
    again = nrf.boot()
    assert again.boot == "done" and again.output == b.output and again.commits == 0
    wear = measure_wear(nrf, JIT)
    assert wear.steady_erases == 0 and wear.lifetime_years() is None and "unbounded" in wear.line()


def test_campaign_with_deferred_results(nrf, tmp_path):
    report = run_emulated_campaign(nrf, len(INPUTS), cuts=40, seed=13, granularity=JIT, warn=1.0,
                                   work_dir=tmp_path / "work")
    assert report.ok and report.cuts >= 40 and report.cuts_in_commits >= 10, report.table()
    assert report.deliveries >= report.completed
    # cuts did land between a delivery and the end of its deferred record; only those give re-deliveries
    assert report.delivered_not_durable >= 1 and report.duplicate_deliveries <= report.delivered_not_durable
