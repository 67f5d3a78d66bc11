"""Just-in-time checkpoints on the emulated nRF52840 (Cortex-M4 board, NVMC rules, NVM in file-backed PSRAM):
the power-fail warning raised at an exact instruction count through the mailbox, one JIT commit at the first unit
boundary after it, and a campaign whose cuts come after the warning (half inside the JIT commit): 0 wrong."""
from __future__ import annotations

import pytest

from tinyexit.boards import load_board
from tinyexit.intermittent.campaign import uninterrupted
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated, run_emulated_campaign
from tinyexit.intermittent.host import Granularity, HostTarget
from tinyexit.intermittent.nvm_events import nvm_trace

from ._support import EMULATED, STANDIN_PIPELINE, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=23)
JIT = Granularity.parse("jit")


@pytest.fixture(scope="module")
def nrf(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("jit-nrf")
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, load_board("nrf52840", emulate=True), out)
    return EmulatedTarget(fw, out / "psram.img")


def test_warning_at_an_instruction_count_gives_one_jit_commit(nrf, standin_exe, tmp_path):
    quiet = nrf.uninterrupted(0, 1, JIT)
    assert quiet.stats["jit_commits"] == 0 and quiet.commits == 1
    total = quiet.instructions
    for at in (total // 3, 2 * total // 3):
        trace = nvm_trace(nrf, 0, JIT, warn_at_instruction=at)
        b = nrf.uninterrupted(0, 1, JIT, warn_at_instruction=at)
        assert b.stats["jit_commits"] == 1 and b.commits == 2
        begins = [e.instructions for e in trace.events if e.kind == "commit_begin"]
        # the JIT commit starts at the first poll at or after the warning (counts exact to one tick)
        assert len(begins) == 2 and begins[0] >= at - trace.resolution
        assert begins[0] - at < total // 4
    # the same answer as the host build's uninterrupted run
    host = HostTarget(standin_exe, tmp_path / "nvm.bin")
    (tmp_path / "in.bin").write_bytes(INPUTS[0])
    want = uninterrupted(host, tmp_path / "in.bin", 1, JIT)
    assert (b.exit_index, b.output) == (want.exit_index, want.output) == (quiet.exit_index, quiet.output)
    # a warning past the end of the boot never comes
    assert nrf.uninterrupted(0, 1, JIT, warn_at_instruction=total + 10_000).stats["jit_commits"] == 0


@pytest.mark.parametrize("gran", ["jit", "jit:layers:2"])
def test_emulated_jit_campaign_cuts_after_the_warning(nrf, tmp_path, gran):
    report = run_emulated_campaign(nrf, len(INPUTS), cuts=20, seed=2, granularity=Granularity.parse(gran),
                                   warn=0.5, work_dir=tmp_path / "work")
    assert report.cuts >= 20 and report.cuts_in_commits >= 4, report.table()
    assert report.ok, report.table()


def test_jit_commit_cut_twice_in_its_payload(nrf):
    """The JIT commit cut in the middle of its payload, twice in a row: words counted as written but still reading
    0xFF lie in the slot's later pages; the third boot must erase them before writing again (prepared slot erased
    whatever it reads), or the emulated NVMC's nWRITE rule stops it. It then commits the uninterrupted result."""
    want = nrf.uninterrupted(0, 1, JIT)
    at = want.instructions // 2
    nrf.erase_nvm()
    for _ in range(2):
        nrf.mailbox(0, 5, JIT, warn_at_instruction=at)
        snap = nrf.snapshot()
        probe = nrf.boot()
        nrf.restore(snap)
        lo, hi = next(w for w in nrf.commit_windows(probe) if w[1] >= at)
        assert nrf.boot(limit=lo + (hi - lo) // 8).cut
    nrf.mailbox(0, 5, JIT, warn_at_instruction=at)
    b = nrf.boot()
    assert b.exit_code == 0, b.text[-300:]
    assert (b.exit_index, b.output) == (want.exit_index, want.output) and b.stats["jit_commits"] == 1


def test_prepared_slot_is_erased_even_when_it_reads_erased(nrf):
    """The state two interrupted JIT commits can leave in a slot of a larger record: words still reading 0xFF but
    already written twice (nWRITE = 2) since their page's erase, crafted here in the emulated flash's write counts.
    The preparation must erase the slot the next commit goes to whatever it reads (a runtime that trusted the
    0xFF would write those words a third time: the emulated NVMC's nWRITE rule ends the boot)."""
    from tinyexit.intermittent.nvm_events import SHADOW_OFFSET, WRITES
    want = nrf.uninterrupted(0, 1, JIT)            # its result in slot 0: the next commit goes to slot 1
    page = nrf.slot_size                           # the stand-in's slots are one page
    with open(nrf.psram, "r+b") as f:
        f.seek(SHADOW_OFFSET + WRITES + page // 4)
        f.write(bytes([2]) * (page // 4))
    nrf.mailbox(0, 2, JIT, warn_at_instruction=want.instructions // 2)
    b = nrf.boot()
    assert b.exit_code == 0, b.text[-300:]
    assert b.stats["prepared"] == 1 and b.stats["jit_commits"] == 1 and b.output == want.output
