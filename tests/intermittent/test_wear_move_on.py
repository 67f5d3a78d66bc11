"""Boots that make no progress (cut after the boot's preparation, or inside its first commit) on the emulated
nRF52840's flash: with TX_CKPT_MOVE_ON a JIT boot's first commit moves past the pages earlier JIT boots since the
newest record marked, so their erases spread over the log; built without it ("no-move-on") the same boots erase
the same page again and again (per-layer boots, which leave torn headers and no mark, still do). Both obey every NVMC rule (nWRITE counted across the cuts) and the boot after
them returns the uninterrupted run's result, and the log's newest valid record (the independent parser) is it."""
from __future__ import annotations

import pytest

from tinyexit.boards import load_board, with_nvm_region
from tinyexit.intermittent import slots as slot_parser
from tinyexit.intermittent.emulated import EmulatedTarget, build_emulated
from tinyexit.intermittent.host import Granularity
from tinyexit.intermittent.nvm_events import read_erases, read_events, reset_erase_counters, reset_shadow

from ._support import EMULATED, STANDIN_PIPELINE, random_inputs

pytestmark = EMULATED

INPUTS = random_inputs(2, 144, seed=21)
BOARD = load_board("nrf52840", emulate=True)
PAGES, BOOTS = 8, 6
IPT = BOARD.instructions_per_tick or 40


def _stuck_boots(standin, out, gran: Granularity, broken: tuple[str, ...]):
    fw = build_emulated(standin, STANDIN_PIPELINE, INPUTS, with_nvm_region(BOARD, PAGES * 4096), out, slots="fit",
                        broken=broken)
    t = EmulatedTarget(fw, out / "psram.img")
    t.calibrate()
    first = t.uninterrupted(0, 1, gran)            # input 0's result is the newest record
    assert first.log and first.exit_code == 0
    reset_erase_counters(t.psram)                  # erases counted from here (the nWRITE state is kept)
    t.mailbox(1, 2, gran)
    for _ in range(BOOTS):                         # each boot cut where its own uncut run shows it
        before = t.snapshot()
        reset_shadow(t.psram, counters=False)
        whole = t.boot()
        assert whole.exit_code == 0 and whole.output is not None
        events = read_events(t.psram, tick_origin=t.tick_origin, instructions_per_tick=IPT)
        t.restore(before)
        if gran.jit:   # JIT commits only on a warning: cut half way, after the boot prepared (erased) its page
            limit = whole.instructions // 2
            assert any(e.kind == "erase" and e.instructions < limit for e in events)
        else:          # inside the first commit, after its header landed, before its CRC word
            lo, hi = t.commit_windows(whole)[0]
            writes = [e.instructions for e in events if e.kind == "write" and lo <= e.instructions <= hi]
            assert len(writes) >= 3, writes        # header, payload, CRC word
            limit = (writes[0] + writes[-1]) // 2
        b = t.boot(limit)
        assert b.cut and "FAULT" not in b.text, b.text
    erases = read_erases(t.psram, PAGES)
    last = t.boot()
    assert last.exit_code == 0 and "FAULT" not in last.text, last.text
    assert last.output == whole.output
    newest = slot_parser.newest_valid(t.nvm_image(), 4096, PAGES, True, t.fingerprint)
    assert newest is not None and newest.input_id == 2 and newest.done and newest.payload == whole.output
    return erases


@pytest.mark.parametrize("gran", ["jit", "layers:1"])
def test_boots_without_progress_spread_their_erases(standin, tmp_path, gran):
    g = Granularity.parse(gran)
    stay = _stuck_boots(standin, tmp_path / "stay", g, ("no-move-on",))
    move = _stuck_boots(standin, tmp_path / "move", g, ())
    assert max(stay) >= BOOTS, stay                # one page erased by every stuck boot
    if g.jit:   # each stuck boot marked the page it prepared: the next one moves on
        assert max(move) <= 2 and sum(1 for e in move if e) >= 3, move   # spread over the log
    else:       # a torn header is not moved past (tx_checkpoint.c, taken_pages: it would grow every boot's scan)
        assert move == stay
