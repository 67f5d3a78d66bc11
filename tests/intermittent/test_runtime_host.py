"""Checkpointing runtime on the host: every committed result under random power cuts equals the
uninterrupted run byte for byte; deliberately broken runtimes fail the same campaign; NVMC rules hold."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tinyexit.errors import TinyexitError
from tinyexit.intermittent import slots
from tinyexit.intermittent.campaign import replay, run_campaign, uninterrupted
from tinyexit.intermittent.host import RUNTIME_DIR, Granularity, build_host

from ._support import HERE, STANDIN_INPUT, STANDIN_PIPELINE, STANDIN_UNITS, make_target, random_inputs

INPUTS = random_inputs(4, STANDIN_INPUT, seed=11)


@pytest.mark.parametrize("gran", ["layers:1", "units:1", "units:5", "layers:2"])
def test_campaign_gives_zero_wrong_results(standin_exe, tmp_path, gran):
    report = run_campaign(make_target(standin_exe, tmp_path), INPUTS, cuts=200, seed=7,
                          granularity=Granularity.parse(gran), work_dir=tmp_path / "work")
    assert report.cuts >= 200
    assert report.cuts_in_commits >= 60, "cuts must also land inside checkpoint writes"
    assert report.cuts_between_commits >= 60
    assert report.completed == report.inferences >= 30
    assert report.wrong_results == 0 and report.lost_checkpoints == 0 and report.crashes == 0, report.table()
    assert report.ok
    # resuming re-executes at most the work since the last commit
    g = Granularity.parse(gran)
    if g.mode == "units":
        assert report.mean_reexecuted_units_per_cut <= g.every
    assert 0 < report.mean_reexecuted_units_per_cut < STANDIN_UNITS


def test_campaign_with_exit_policy(standin_exe, tmp_path):
    """Exit heads run (threshold policy) and the pipeline stops at various exits; still exact."""
    report = run_campaign(make_target(standin_exe, tmp_path), INPUTS, cuts=60, seed=3,
                          granularity=Granularity.parse("units:2"), threshold=60)
    assert report.ok, report.table()


def test_broken_no_crc_gives_wrong_results_and_replays(standin, build_dir, tmp_path):
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "no_crc", broken=("no-crc",))
    g = Granularity.parse("units:1")
    report = run_campaign(make_target(exe, tmp_path), INPUTS, cuts=200, seed=7, granularity=g,
                          work_dir=tmp_path / "work")
    assert report.wrong_results > 0 and not report.ok
    assert "TX_CUT_EVENTS=" in report.table()   # the failing cuts are printed for a replay
    f = next(f for f in report.failures if f.kind == "wrong-result" and f.cuts)
    wrong = re.search(r"committed exit (\d+) ([0-9a-f]+)", f.detail)
    (tmp_path / "in.bin").write_bytes(INPUTS[f.inference % len(INPUTS)])
    again = replay(make_target(exe, tmp_path, "replay.bin"), f, tmp_path / "in.bin", g)
    assert (again.exit_index, again.output.hex()) == (int(wrong.group(1)), wrong.group(2))


def test_broken_single_slot_loses_checkpoints(standin, build_dir, tmp_path):
    """One slot: a cut while it is rewritten leaves no checkpoint (or an older one is all that is left)."""
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "single_slot", broken=("single-slot",))
    report = run_campaign(make_target(exe, tmp_path), INPUTS, cuts=200, seed=7,
                          granularity=Granularity.parse("units:1"))
    assert report.lost_checkpoints > 0 and not report.ok


def test_runtime_without_erase_is_caught_by_nvmc_rules(standin, build_dir, tmp_path):
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "no_erase", broken=("no-erase",))
    (tmp_path / "in.bin").write_bytes(INPUTS[0])
    with pytest.raises(TinyexitError, match="NVMC rule: write sets bits that are 0"):
        uninterrupted(make_target(exe, tmp_path), tmp_path / "in.bin", 1, Granularity.parse("layers:1"))


@pytest.fixture(scope="module")
def rules_driver(tmp_path_factory):
    exe = tmp_path_factory.mktemp("rules") / "nvm_rules"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-DTX_NVM_NVMC_RULES",
                    f"-I{RUNTIME_DIR}", str(HERE / "nvm_rules_driver.c"), str(RUNTIME_DIR / "tx_nvm_file.c"),
                    str(RUNTIME_DIR / "tx_rt_host.c"), "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("scenario,ok,message", [
    ("erase-write", True, ""),
    ("clear-bits", True, ""),
    ("write-without-erase", False, "write sets bits that are 0"),
    ("unaligned-write", False, "not word-aligned"),
    ("unaligned-erase", False, "not page-aligned"),
    ("third-write", False, "more than nWRITE"),
    ("outside", False, "outside the NVM"),
])
def test_nvmc_rules(rules_driver, tmp_path, scenario, ok, message):
    nvm = tmp_path / "nvm.bin"
    nvm.write_bytes(b"\xff" * 8192)
    r = subprocess.run([str(rules_driver), scenario], capture_output=True, text=True,
                       env={"TX_NVM_FILE": str(nvm)})
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode != 0 and "no violation detected" not in r.stdout
        assert f"NVMC rule: {message}" in r.stderr or message in r.stderr, r.stderr


def test_result_is_committed_and_not_recomputed(standin_exe, tmp_path):
    t = make_target(standin_exe, tmp_path)
    (tmp_path / "in.bin").write_bytes(INPUTS[1])
    g = Granularity.parse("layers:1")
    first = t.boot(tmp_path / "in.bin", 5, g)
    assert first.returncode == 0 and first.boot == "fresh" and first.units == STANDIN_UNITS
    rec = t.newest()
    assert rec.done and rec.input_id == 5 and rec.payload == first.output and rec.exit_index == 2
    again = t.boot(tmp_path / "in.bin", 5, g)
    assert again.boot == "done" and again.units == 0 and again.output == first.output
    other = t.boot(tmp_path / "in.bin", 6, g)       # a new input id starts fresh
    assert other.boot == "fresh" and other.units == STANDIN_UNITS


def test_torn_slot_is_ignored_by_parser_and_runtime(standin_exe, tmp_path):
    """Flip one payload byte of the newest checkpoint: its CRC fails, the runtime resumes from the other."""
    t = make_target(standin_exe, tmp_path)
    (tmp_path / "in.bin").write_bytes(INPUTS[2])
    g = Granularity.parse("units:1")
    oracle = uninterrupted(make_target(standin_exe, tmp_path, "o.bin"), tmp_path / "in.bin", 9, g)
    b = t.boot(tmp_path / "in.bin", 9, g, cut_units=20)
    assert b.cut
    image = bytearray(t.nvm_image())
    newest = slots.newest_valid(bytes(image), t.slot_size)
    image[newest.slot * t.slot_size + slots.HEADER_BYTES + 3] ^= 0x40
    t.nvm_path.write_bytes(bytes(image))
    older = slots.newest_valid(bytes(image), t.slot_size)
    assert older is not None and older.seq == newest.seq - 1
    b = t.boot(tmp_path / "in.bin", 9, g)
    assert b.boot == "resumed" and int(b.kv["unit"]) + 0 >= 0
    assert (b.exit_index, b.output) == (oracle.exit_index, oracle.output)


def test_low_energy_finishes_at_next_exit(standin_exe, tmp_path):
    """Low energy during segment k: the pipeline finishes at the exit head after segment k, and records it;
    under cuts the committed output equals the uninterrupted output of the exit taken."""
    (tmp_path / "in.bin").write_bytes(INPUTS[3])
    g = Granularity.parse("units:3")
    scratch = make_target(standin_exe, tmp_path, "scratch.bin")
    exits = {}
    for low in (1, 31, None):        # during seg0, during seg1, never
        o = uninterrupted(scratch, tmp_path / "in.bin", 1, g, low_energy_units=low)
        exits[o.exit_index] = o.output
    assert sorted(exits) == [0, 1, 2]
    # exit 0 through the low-energy path equals exit 0 through the policy path (threshold -128: always exit)
    assert uninterrupted(scratch, tmp_path / "in.bin", 1, g, threshold=-128).output == exits[0]
    t = make_target(standin_exe, tmp_path)
    import random
    rng = random.Random(5)
    taken = set()
    for n in range(40):
        low = rng.choice([3, 20, 33, 36, None])
        for _ in range(rng.randint(0, 3)):
            t.boot(tmp_path / "in.bin", 100 + n, g, cut_units=rng.randint(1, 30), low_energy_units=low)
        b = t.boot(tmp_path / "in.bin", 100 + n, g, low_energy_units=low)
        rec = t.newest()
        assert b.returncode == 0 and rec.done and rec.input_id == 100 + n
        assert rec.payload == exits[rec.exit_index] == b.output
        assert rec.low_energy == (rec.exit_index != 2)
        taken.add(rec.exit_index)
    assert taken == {0, 1, 2}


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)")
def test_runtime_builds_for_cortex_m4(standin, tmp_path):
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99", "-O2",
             "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME_DIR}", f"-I{standin}"]
    for src in ("tx_checkpoint.c", "tx_crc32.c"):
        subprocess.run(["arm-none-eabi-gcc", *flags, "-c", str(RUNTIME_DIR / src), "-o",
                        str(tmp_path / (src + ".o"))], check=True)


def test_checkpoint_of_another_pipeline_is_not_resumed(standin, standin_exe, build_dir, tmp_path):
    """A reflashed firmware (other pipeline shape) must not resume a checkpoint it did not write."""
    from tinyexit.pipeline import SEGMENT, Pipeline, Stage
    other = build_host(standin, Pipeline((Stage("seg0", SEGMENT), Stage("seg1", SEGMENT), Stage("seg2", SEGMENT, 2))),
                       build_dir / "no_exits")
    t = make_target(standin_exe, tmp_path)
    (tmp_path / "in.bin").write_bytes(INPUTS[0])
    g = Granularity.parse("units:1")
    assert t.boot(tmp_path / "in.bin", 4, g, cut_units=10).cut
    b = type(t)(other, t.nvm_path).boot(tmp_path / "in.bin", 4, g)
    assert b.boot == "fresh" and b.units == STANDIN_UNITS
    assert t.boot(tmp_path / "in.bin", 4, g).boot == "fresh"   # and the first one sees the other's result


def test_ring_of_four_slots(standin, build_dir, tmp_path):
    """TX_CKPT_SLOTS=4: commits rotate over four slots (each flash page is erased half as often as with two)
    and the campaign stays exact."""
    exe = build_host(standin, STANDIN_PIPELINE, build_dir / "ring4", slots=4)
    t = make_target(exe, tmp_path)
    assert t.num_slots == 4 and t.info["nvm_bytes"] == 4 * t.slot_size
    report = run_campaign(t, INPUTS, cuts=200, seed=5, granularity=Granularity.parse("units:2"))
    assert report.ok and report.cuts_in_commits >= 60, report.table()
    used = {s for s in range(4) if slots.read_slot(t.nvm_image(), s, t.slot_size) is not None}
    assert used == {0, 1, 2, 3}


def test_campaign_with_low_energy_and_cuts(standin_exe, tmp_path):
    """Half the boots signal low energy at a random point: inferences end at every exit, each committed
    result equal to the uninterrupted output of the exit it records."""
    report = run_campaign(make_target(standin_exe, tmp_path), INPUTS, cuts=200, seed=13,
                          granularity=Granularity.parse("units:3"), low_energy=0.5)
    assert report.ok, report.table()
    assert set(report.exits) == {0, 1, 2}


@pytest.mark.parametrize("variant", ["", "-DTX_CRC32_SMALL"])
def test_crc32_equals_zlib(tmp_path, variant):
    import random
    import zlib
    exe = tmp_path / "crc"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *([variant] if variant else []),
                    f"-I{RUNTIME_DIR}", str(HERE / "crc_driver.c"), str(RUNTIME_DIR / "tx_crc32.c"),
                    "-o", str(exe)], check=True)
    rng = random.Random(3)
    for n in (0, 1, 3, 4, 5, 63, 64, 1000):
        data = bytes(rng.randrange(256) for _ in range(n))
        cut = rng.randrange(n + 1)
        out = subprocess.run([str(exe), data.hex(), str(cut)], capture_output=True, text=True, check=True).stdout
        assert out.split() == [f"{zlib.crc32(data):08x}"] * 8
