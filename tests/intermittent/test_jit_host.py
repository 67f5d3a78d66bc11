"""Just-in-time checkpoints on the host: commits only on the power-fail warning (one per episode), cuts after the
warning and inside the JIT commit give 0 wrong results; deliberately broken JIT runtimes fail; the next slot is
prepared at boot and a commit skips a page only when it reads erased."""
from __future__ import annotations

import pytest

from tinyexit.errors import TinyexitError
from tinyexit.intermittent.campaign import run_campaign, uninterrupted
from tinyexit.intermittent.host import Granularity, build_host

from ._support import STANDIN_INPUT, STANDIN_PIPELINE, STANDIN_UNITS, make_target, random_inputs

INPUTS = random_inputs(3, STANDIN_INPUT, seed=5)
PAGE = 4096


@pytest.fixture
def one_input(tmp_path):
    p = tmp_path / "in.bin"
    p.write_bytes(INPUTS[0])
    return p


def test_parse_jit_granularities():
    assert str(Granularity.parse("jit")) == "jit" and Granularity.parse("jit").mode == "none"
    g = Granularity.parse("jit:layers:3")
    assert (g.mode, g.every, g.jit, str(g), g.c_mode) == ("layers", 3, True, "jit:layers:3", 0x101)
    with pytest.raises(TinyexitError, match="jit"):
        Granularity.parse("jit:jit")


def test_jit_commits_only_on_the_warning_once_per_episode(standin_exe, tmp_path, one_input):
    t = make_target(standin_exe, tmp_path)
    g = Granularity.parse("jit")
    want = uninterrupted(t, one_input, 1, Granularity.parse("layers:1"))
    quiet = t.boot(one_input, 2, g)
    assert (quiet.commits, quiet.kv["jit_commits"]) == (1, 0)       # the result only
    t.erase_nvm()
    warned = t.boot(one_input, 3, g, warn_units=5)                   # one long episode
    assert (warned.commits, warned.kv["jit_commits"]) == (2, 1)
    t.erase_nvm()
    # polls come at piece ends (units 12, 24, 30, ...): seen at 12, clear at 24, back at 30
    twice = t.boot(one_input, 4, g, warn_units="10-20,25")
    assert twice.kv["jit_commits"] == 2
    assert {(b.exit_index, b.output) for b in (quiet, warned, twice)} == {(want.exit_index, want.output)}


def test_jit_commit_is_resumed_from(standin_exe, tmp_path, one_input):
    """Warned at unit 20 and cut at unit 30: the next boot resumes at the JIT checkpoint (after unit 24)."""
    t = make_target(standin_exe, tmp_path)
    g = Granularity.parse("jit")
    cut = t.boot(one_input, 9, g, warn_units=20, cut_units=30)
    assert cut.cut
    rec = t.newest()
    assert rec is not None and not rec.done and rec.input_id == 9
    again = t.boot(one_input, 9, g)
    assert again.boot == "resumed" and again.units < STANDIN_UNITS
    assert (again.exit_index, again.output) == (uninterrupted(t, one_input, 1, g).exit_index,
                                                uninterrupted(t, one_input, 1, g).output)


@pytest.mark.parametrize("gran", ["jit", "jit:layers:2"])
def test_jit_campaign_cuts_after_the_warning_zero_wrong(standin_exe, tmp_path, gran):
    report = run_campaign(make_target(standin_exe, tmp_path), INPUTS, cuts=120, seed=3,
                          granularity=Granularity.parse(gran), warn=0.5, work_dir=tmp_path / "work")
    assert report.cuts >= 120 and report.cuts_in_commits >= 30 and report.cuts_between_commits >= 30
    assert report.jit_commits > 0
    assert report.ok, report.table()


def test_broken_no_latch_commits_again_and_again(standin, build_dir, tmp_path, one_input):
    """Without the latch every poll of one warning episode commits: the one-per-episode check catches it."""
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "no_latch", broken=("jit-no-latch",))
    b = make_target(exe, tmp_path).boot(one_input, 1, Granularity.parse("jit"), warn_units=5)
    assert b.kv["jit_commits"] > 1


def _next_slot_page(target) -> int:
    """Offset of the first page of the slot the next commit writes: the ring's other slot (two slots)."""
    rec = target.newest()
    return ((rec.slot + 1) % target.num_slots) * target.slot_size


def _damage(target, how: str) -> None:
    """Leaves the first page of the next slot not quite erased: its second half old (a cut inside an erase),
    one programmed word at its very end, or everything but its first word old."""
    off = _next_slot_page(target)
    image = bytearray(target.nvm_image())
    lo = {"half": PAGE // 2, "last_word": PAGE - 4, "all_but_first_word": 4}[how]
    image[off + lo: off + PAGE] = bytes(PAGE - lo)
    target.nvm_path.write_bytes(bytes(image))


@pytest.mark.parametrize("damage", ["half", "last_word", "all_but_first_word"])
def test_not_quite_erased_page_is_erased(standin_exe, tmp_path, one_input, damage):
    """Such a page must be erased by the preparation (the NVMC rules, write only into erased words, catch a
    skip that the record then writes over)."""
    t = make_target(standin_exe, tmp_path)
    g = Granularity.parse("jit")
    first = t.boot(one_input, 1, g)
    _damage(t, damage)
    b = t.boot(one_input, 2, g, warn_units=5)
    assert b.returncode == 0, b.stderr
    assert b.kv["prepared"] == 1 and b.kv["jit_commits"] == 1
    assert (b.exit_index, b.output) == (first.exit_index, first.output)


@pytest.mark.parametrize("broken", [(), ("trust-first-word",)])
def test_page_outside_the_prepared_slot_is_read_whole(standin, build_dir, tmp_path, one_input, broken):
    """Three slots: the preparation erases the next slot (the JIT commit goes there), the result goes to the one
    after it, whose page is checked by reading. With everything but its first word old, the runtime erases it; a
    runtime that counts a page as erased by its first word writes the result over old data (NVMC rule)."""
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / ("three" + "".join(broken)), broken=broken, slots=3)
    t = make_target(exe, tmp_path)
    g = Granularity.parse("jit")
    first = t.boot(one_input, 1, g)                     # its result in slot 0
    image = bytearray(t.nvm_image())
    off = 2 * t.slot_size                               # slot 2: after the prepared slot 1
    image[off + 4: off + PAGE] = bytes(PAGE - 4)
    t.nvm_path.write_bytes(bytes(image))
    b = t.boot(one_input, 2, g, warn_units=5)
    if broken:
        assert b.returncode != 0 and "NVMC rule: write sets bits that are 0" in b.stderr
    else:
        assert b.returncode == 0 and (b.kv["prepared"], b.kv["erases"], b.kv["jit_commits"]) == (1, 1, 1)
        assert (b.exit_index, b.output) == (first.exit_index, first.output)


def test_erased_pages_are_not_erased_again(standin_exe, tmp_path, one_input):
    """On a blank NVM the first use of the slot after the prepared one needs no erase; a slot used before is erased
    before its reuse, once (by the preparation, whatever it reads, or by the commit)."""
    t = make_target(standin_exe, tmp_path)
    g = Granularity.parse("layers:1")
    b1 = t.boot(one_input, 1, g)
    assert b1.commits == 7 and (b1.kv["prepared"], b1.kv["skipped"], b1.kv["erases"]) == (1, 2, 5)
    b2 = t.boot(one_input, 2, g)
    assert b2.kv["erases"] + b2.kv["prepared"] == b2.commits   # each commit's one page, erased once


def test_broken_no_crc_fails_the_jit_campaign_and_replays_with_its_warnings(standin, build_dir, tmp_path):
    """A torn JIT commit accepted without its CRC gives wrong results; the failure keeps each boot's warning, so
    replaying it (same NVM image, cuts and warnings) gives the same wrong bytes."""
    import re

    from tinyexit.intermittent.campaign import replay
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "no_crc", broken=("no-crc",))
    g = Granularity.parse("jit")
    report = run_campaign(make_target(exe, tmp_path), INPUTS, cuts=150, seed=4, granularity=g, warn=0.5,
                          kinds=("events",), work_dir=tmp_path / "work")
    assert report.wrong_results > 0 and not report.ok, report.table()
    f = next(f for f in report.failures if f.kind == "wrong-result" and any(w is not None for w in f.warnings)
             and "committed exit" in f.detail)
    assert "power-fail warning per boot at" in f.replay_hint()
    wrong = re.search(r"committed exit (\d+) ([0-9a-f]+)", f.detail)
    (tmp_path / "in.bin").write_bytes(INPUTS[f.inference % len(INPUTS)])
    again = replay(make_target(exe, tmp_path, "replay.bin"), f, tmp_path / "in.bin", g)
    assert (again.exit_index, again.output.hex()) == (int(wrong.group(1)), wrong.group(2))
