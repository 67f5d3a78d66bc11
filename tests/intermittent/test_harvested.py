"""The harvested campaign (intermittent/harvested.py): its time and energy bookkeeping against a hand computation
(constant harvester, a stand-in board whose boots commit every 100k instructions), the checks that must catch a
wrong result, one real emulated campaign of the stand-in model on the nRF52840 (through the CLI), CLI errors."""
from __future__ import annotations

import copy
import json
import math

import pytest

from tinyexit.cli import main
from tinyexit.intermittent.energy import EnergyModel
from tinyexit.intermittent.harvest import constant
from tinyexit.intermittent.harvested import Config, Probe, run_harvested, units_at
from tinyexit.pipeline import Granularity

from ._support import EMULATED

K, M = 600_000, 100_000        # instructions of an inference; a checkpoint commit every M of them
OUT = bytes([1, 2, 3])


class StandInBoard:
    """A HarvestBoard without QEMU: an inference is K instructions of work that commits its progress every M
    instructions (commit marks only, no flash), then commits its result (exit 0, OUT). The 'NVM' is the
    committed progress per input id."""

    def __init__(self):
        self.nvm = {"seq": 0, "id": None, "done": False, "progress": 0}
        self.probes, self.limits, self.jobs = 0, [], []

    def snapshot(self):
        return copy.deepcopy(self.nvm)

    def restore(self, snap):
        self.nvm = copy.deepcopy(snap)

    def _start(self, job):
        if self.nvm["id"] != job.input_id:
            self.nvm.update(id=job.input_id, done=False, progress=0)
        return self.nvm["progress"]

    def probe(self, job):
        self.probes += 1
        self.jobs.append(job)
        start = self._start(job)
        left = K - start
        events = [(c - start, "commit") for c in range(start + M, K, M)] + [(left, "result")]
        self.nvm.update(progress=K, done=True, seq=self.nvm["seq"] + len(events))
        # one work unit per M instructions, for the shared branch's low-energy signal
        return Probe(events, left, (0, OUT), anchors=[(c - start, (c - start) // M) for c in range(start, K + 1, M)])

    def cut(self, job, limit):
        self.limits.append(limit)
        start = self._start(job)
        reached = min(K - 1, start + limit) // M * M
        self.nvm.update(seq=self.nvm["seq"] + (reached - start) // M, progress=max(start, reached))
        return start + limit < K

    def committed(self):
        n = self.nvm
        return None if n["id"] is None else (n["seq"], n["id"], n["done"], 0 if n["done"] else -1,
                                             OUT if n["done"] else b"")


def hand_model(**kw):
    # 1 MHz, 2 mW running, nothing off; 100 uF between 3 V and 2 V holds 0.25 mJ
    base = dict(capacitor_f=100e-6, on_v=3.0, off_v=2.0, warn_v=None, max_v=3.6, clock_hz=1e6, run_w=2e-3,
                sleep_w=0.0, off_w=0.0, erase_w=0.0, erase_s=0.0, write_w=0.0, write_s=0.0)
    base.update(kw)
    return EnergyModel(**base)


def test_bookkeeping_against_a_hand_computation():
    """1 mW harvested, 2 mW drawn: a full charge (0.25 mJ usable) runs 0.25 s = 250k instructions, a recharge
    from V_off takes 0.25 s. Inference 0: charge 0..0.25; boot to 250k (progress 200k), off 0.5..0.75; boot to
    400k, off 1.0..1.25; the last 200k end at 1.45 s (latency 1.2 s) with E = 0.45 - 0.2 = 0.25 mJ left
    (V = sqrt(5)). Inference 1 starts there: 0.05 mJ above V_off run 50k (no commit), off 1.5..1.75, then as
    inference 0: result at 2.95 s (latency 1.5 s)."""
    board = StandInBoard()
    rep, camp = run_harvested(board, hand_model(), constant(1e-3), Config("layer", Granularity()), num_inputs=2,
                              expected=lambda j, k: OUT if k == 0 else None, inferences=2)
    assert rep.inferences == 2 and rep.wrong == 0 and rep.lost_checkpoints == 0 and rep.emulator_mismatches == 0
    assert rep.cuts == 5 and rep.boots == 7
    assert board.limits == [250_000, 250_000, 50_000, 250_000, 250_000]
    assert rep.latencies_s == pytest.approx([1.2, 1.5])
    assert rep.seconds == pytest.approx(2.95)
    assert rep.harvested_j == pytest.approx(2.95e-3)
    assert rep.consumed_j == pytest.approx(2e-3 * (0.25 * 4 + 0.2 * 2 + 0.05))
    # what the capacitor gained is what was harvested minus what the board drew
    t, v = camp.series()
    assert v[-1] == pytest.approx(math.sqrt(5.0))
    assert rep.harvested_j - rep.consumed_j == pytest.approx(0.5 * 100e-6 * (5.0 - 4.0))
    assert rep.inferences_per_mj == pytest.approx(2 / 2.95)
    assert rep.off_s == pytest.approx(0.25 * 6)
    assert rep.latency() == {"median": pytest.approx(1.35), "p90": pytest.approx(1.5), "max": pytest.approx(1.5)}


def test_a_wrong_result_and_a_stalled_inference_are_reported():
    rep, _ = run_harvested(StandInBoard(), hand_model(), constant(1e-3), Config("layer", Granularity()),
                           num_inputs=1, expected=lambda j, k: b"\x09", inferences=1)
    assert rep.inferences == 1 and rep.wrong == 1 and not rep.ok
    # without checkpoints progress would be needed in one charge: a board whose charge runs less than M
    rep, _ = run_harvested(StandInBoard(), hand_model(capacitor_f=30e-6), constant(1e-3),
                           Config("layer", Granularity()), num_inputs=1, expected=lambda j, k: OUT, inferences=1,
                           max_boots_per_inference=5)
    assert rep.inferences == 0 and "no result in 5 boots" in rep.stopped


def test_seconds_limit_and_units_at_the_warning():
    rep, _ = run_harvested(StandInBoard(), hand_model(), constant(1e-3), Config("layer", Granularity()),
                           num_inputs=2, expected=lambda j, k: OUT, seconds=1.46)
    assert rep.inferences == 1 and rep.seconds >= 1.46
    anchors = [(1000, 0), (11000, 10), (21000, 12)]
    assert [units_at(anchors, w) for w in (0, 1000, 5999, 6000, 11000, 16000, 30000)] == [0, 0, 4, 5, 10, 11, 12]


@pytest.mark.parametrize("signal,field,value", [("low_energy", "low_energy_units", 2),
                                                ("warn", "warn_at_instruction", 150_000)])
def test_the_warning_reaches_the_firmware(signal, field, value):
    """V_warn = sqrt(6) V leaves E(on) - 0.15 mJ: at a net 1 mW the warning comes 150 ms = 150k instructions into
    the first boot, i.e. inside work unit 2 (units of 100k): the boot is probed again with the signal there."""
    board = StandInBoard()
    rep, _ = run_harvested(board, hand_model(warn_v=math.sqrt(6.0)), constant(1e-3),
                           Config("x", Granularity(), signal), num_inputs=1, expected=lambda j, k: OUT, inferences=1)
    assert rep.inferences == 1 and rep.warnings == 3 and rep.wrong == 0
    first = [j for j in board.jobs if getattr(j, field) is not None][0]
    assert getattr(first, field) == value
    assert board.probes == 3 + 3     # each of the 3 boots: a probe, then one with the signal


@pytest.mark.parametrize("args,msg", [
    (["--harvester", "rf"], "--harvester powers the emulated board; add --emulate"),
    (["--emulate", "--harvester", "wind"], "unknown harvester 'wind'"),
    (["--emulate", "--harvester", "rf", "--capacitor", "big"], "--capacitor"),
    (["--emulate", "--harvester", "rf", "--capacitor=-1uF"], "--capacitor"),
    (["--emulate", "--harvester", "rf", "--seconds", "0"], "--seconds 0"),
    (["--emulate", "--harvester", "rf", "--inferences", "0"], "--inferences 0: at least 1"),
    (["--emulate", "--capacitor", "1mF"], "add --harvester"),
    (["--emulate", "--harvester", "missing.csv"], "missing.csv does not exist"),
    (["--emulate", "--harvester", "rf", "--granularity", "often"], "granularity 'often' not understood"),
    (["--emulate", "--harvester", "rf", "--board", "mps2-an386"], "no energy: section"),
])
def test_cli_errors(standin, tmp_path, capsys, args, msg):
    rc = main(["powerfail", str(standin), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err


@EMULATED[0]
@EMULATED[1]
def test_emulated_harvested_campaign_of_the_standin(standin, tmp_path, capsys):
    """The stand-in model on the emulated nRF52840 from 1 mF at 1 mW constant: a page erase (1.02 mJ) per commit
    means cuts; every result equals the uninterrupted run and the NVM's committed record."""
    rc = main(["powerfail", str(standin), "--emulate", "--board", "nrf52840", "--harvester", "constant:1mW",
               "--capacitor", "1mF", "--inferences", "3", "--inputs", "2", "--granularity", "layer",
               "--out", str(tmp_path / "o"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    (r,) = json.loads((tmp_path / "r.json").read_text())
    assert r["inferences"] == 3 and r["wrong"] == 0 and r["lost_checkpoints"] == 0 and r["cuts"] > 0
    for key in ("flash_erases_per_inference", "flash_lifetime_years_at_1hz", "inferences_per_mj"):
        assert r[key] is not None and r[key] > 0, key
    # each completed inference ends with the one boot that was not cut
    assert r["harvested_j"] > r["consumed_j"] > 0 and r["boots"] == r["cuts"] + 3
    assert (tmp_path / "o" / "harvest-layer" / "voltage.png").stat().st_size > 0


@EMULATED[0]
@EMULATED[1]
def test_emulated_harvested_campaign_over_an_nvm_region(standin, tmp_path, capsys):
    """`--nvm-region` reaches a harvested campaign: the records go to a log over 32 pages, so the erases of the
    same campaign spread (its most erased page is erased less often than with the two slots' pages)."""
    def campaign(name, *extra):
        rc = main(["powerfail", str(standin), "--emulate", "--board", "nrf52840", "--harvester", "constant:1mW",
                   "--capacitor", "1mF", "--inferences", "4", "--inputs", "2", "--granularity", "layer",
                   *extra, "--out", str(tmp_path / name), "--json", str(tmp_path / f"{name}.json")])
        assert rc == 0, capsys.readouterr().out
        (r,) = json.loads((tmp_path / f"{name}.json").read_text())
        assert r["inferences"] == 4 and r["wrong"] == 0 and r["lost_checkpoints"] == 0 and r["cuts"] > 0
        return r
    two = campaign("two")
    log = campaign("log", "--nvm-region", "128K")
    assert log["nvm_region_bytes"] == 131072 and two["nvm_region_bytes"] < 131072
    # lifetime = endurance / (most erases on one page per inference): the log's is longer
    assert log["flash_lifetime_years_at_1hz"] > two["flash_lifetime_years_at_1hz"]


def test_branch_configuration_carries_its_thresholds():
    """'branch[:WARN][/GRANULARITY][+T[:LOW]]': the shared branch's confidence mode with low energy's own threshold."""
    from tinyexit.errors import TinyexitError
    from tinyexit.intermittent.harvested_runs import parse_config
    cfg, board = parse_config("branch:2.0V/layers:4+99:60@nrf52840-fram")
    assert (cfg.signal, cfg.warn_v, str(cfg.granularity), int(cfg.threshold), cfg.threshold.low, board) == \
        ("low_energy", 2.0, "layers:4", 99, 60, "nrf52840-fram")
    assert parse_config("branch")[0].threshold is None and parse_config("branch+99")[0].threshold.low is None
    with pytest.raises(TinyexitError):
        parse_config("branch+x")
