"""Campaigns split into shards and fanned out on Ray (tinyexit.intermittent.fanout): the plan, the merge, and a
sharded host campaign that gives the same report serially and on two Ray workers, each shard equal to the
serial campaign of its own seed."""
from __future__ import annotations

import shutil

import pytest

from tinyexit.cli import main
from tinyexit.errors import TinyexitError
from tinyexit.intermittent import CampaignReport, Failure, HostTarget, fanout, powerfail, random_inputs, run_campaign
from tinyexit.intermittent.host import Granularity


def test_plan_splits_cuts_and_derives_seeds():
    p = fanout.plan(7, 10, 3)
    assert [s.cuts for s in p] == [4, 3, 3] and sum(s.cuts for s in p) == 10
    assert [s.index for s in p] == [0, 1, 2] and all(s.count == 3 for s in p)
    assert len({s.seed for s in p}) == 3 and all(0 <= s.seed < 2 ** 31 for s in p)
    assert [s.seed for s in fanout.plan(7, 10, 3)] == [s.seed for s in p]          # deterministic
    assert [s.seed for s in fanout.plan(8, 10, 3)] != [s.seed for s in p]          # depends on the seed
    assert fanout.plan(7, 10, 1) == [fanout.Shard(0, 1, 7, 10)]                    # one shard: the serial campaign
    assert len(fanout.plan(0, 24)) == 1 and len(fanout.plan(0, 200)) == 8            # default: one per 25 cuts
    for seed, cuts, shards in ((0, 5, 6), (0, 0, 1), (0, 5, 0)):
        with pytest.raises(TinyexitError):
            fanout.plan(seed, cuts, shards)


def test_merge_adds_counts_and_tags_failures():
    a = CampaignReport("layers:1", 11, 2, cuts=5, inferences=3, completed=3, boots=9, exits={1: 3},
                       units_per_inference=100.0)
    b = CampaignReport("layers:1", 12, 2, cuts=4, inferences=2, completed=1, boots=7, wrong_results=1,
                       exits={0: 1, 1: 1}, units_per_inference=100.0,
                       failures=[Failure("wrong-result", 1, 2, "bytes differ")])
    plan = [fanout.Shard(0, 2, 11, 5), fanout.Shard(1, 2, 12, 4)]
    m = fanout.merge([a, b], plan, seed=3)
    assert (m.cuts, m.inferences, m.completed, m.boots, m.wrong_results) == (9, 5, 4, 16, 1)
    assert m.exits == {0: 1, 1: 4} and m.units_per_inference == 100.0 and m.seed == 3
    assert len(m.failures) == 1 and "shard-001 of 2, seed 12" in m.failures[0].detail and not m.ok


def _strip(d: dict) -> dict:
    """A report without its work-folder paths (NVM images of failures live in each run's own folder)."""
    d = dict(d)
    d["failures"] = [{k: v for k, v in f.items() if k != "nvm_at_start"} for f in d["failures"]]
    return d


def test_sharded_campaign_same_serially_and_on_ray(standin, standin_exe, tmp_path):
    kw = dict(cuts=30, seed=5, granularities=["units:3"], num_inputs=2, check_reference=False, shards=3)
    serial = powerfail(standin, tmp_path / "serial", workers=1, **kw)[0]
    on_ray = powerfail(standin, tmp_path / "ray", workers=2, **kw)[0]
    assert serial.ok and serial.cuts >= 30 and serial.inferences >= 3
    assert _strip(on_ray.as_dict()) == _strip(serial.as_dict())
    assert all((tmp_path / "ray" / s.name / "nvm.bin").exists() for s in fanout.plan(5, 30, 3))   # own NVM each
    # every shard is the ordinary serial campaign of its own seed: run them here one by one and merge
    inputs = random_inputs(2, HostTarget(standin_exe, tmp_path / "info.bin").info["input_size"], 5)
    plan = fanout.plan(5, 30, 3)
    alone = [run_campaign(HostTarget(standin_exe, tmp_path / f"alone{s.index}.bin"), inputs, cuts=s.cuts,
                          seed=s.seed, granularity=Granularity.parse("units:3")) for s in plan]
    assert _strip(fanout.merge(alone, plan, 5).as_dict()) == _strip(serial.as_dict())


def test_sharded_broken_runtime_names_the_failing_shard(standin, tmp_path, capsys):
    rc = main(["powerfail", str(standin), "--cuts", "120", "--seed", "7", "--granularity", "units:1",
               "--broken", "no-crc", "--shards", "4", "--workers", "2", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL inference" in out and "of 4, seed" in out and "TX_CUT_EVENTS=" in out


def test_fanout_options_are_checked(standin, tmp_path, capsys):
    assert main(["powerfail", str(standin), "--cuts", "3", "--shards", "5", "--out", str(tmp_path / "o")]) == 2
    assert "--shards 5" in capsys.readouterr().err
    assert main(["powerfail", str(standin), "--cuts", "3", "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--workers 0" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_sharded_emulated_campaign_same_on_one_and_two_workers(standin, tmp_path):
    """Exact-cut campaigns on the emulated nRF52840 in two shards (each its own PSRAM file): one worker here and
    two Ray workers give the same report."""
    from tinyexit.intermittent.emulated_powerfail import powerfail_emulated
    kw = dict(board="nrf52840", cuts=8, seed=3, granularities=["layer"], num_inputs=1, wear=False, shards=2)
    (one,) = powerfail_emulated(standin, tmp_path / "one", workers=1, **kw)
    (two,) = powerfail_emulated(standin, tmp_path / "two", workers=2, **kw)
    assert one.ok and one.cuts >= 8 and (tmp_path / "two" / "shard-001" / "psram.img").exists()
    assert one.cycles_per_inference >= one.instructions_per_inference > 0   # the cycle estimate beside (#17)
    assert "estimated cycles per inference" in one.table()
    skip = {"seconds", "wall_seconds", "seconds_per_cut", "nvm_trace"}
    a, b = (_strip({k: v for k, v in r.as_dict().items() if k not in skip}) for r in (one, two))
    assert a == b
