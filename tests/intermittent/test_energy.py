"""The capacitor energy model against discharges, charges and flash costs computed by hand here
(E = C V^2 / 2, t = dE / net power, instructions = t x clock)."""
from __future__ import annotations

import dataclasses
import math

import pytest

from tinyexit.boards import load_board
from tinyexit.errors import TinyexitError
from tinyexit.intermittent.energy import (EnergyModel, Flash, Mark, Sleep, Work, simulate, timeline)
from tinyexit.intermittent.energy_plot import plot_campaign
from tinyexit.intermittent.harvest import Piecewise, constant, parse_harvester

C, CLOCK = 100e-6, 64e6


def model(**kw) -> EnergyModel:
    base = dict(capacitor_f=C, on_v=3.0, off_v=1.8, warn_v=2.4, max_v=3.6, clock_hz=CLOCK, run_w=3e-3,
                sleep_w=0.0, off_w=0.0, erase_w=12e-3, erase_s=85e-3, write_w=12e-3, write_s=41e-6)
    base.update(kw)
    return EnergyModel(**base)


def joules(v0, v1, c=C):
    return 0.5 * c * (v0 ** 2 - v1 ** 2)


def test_known_discharge_without_harvest():
    """100 uF from 3.0 V to 1.8 V at 3 mW: dE = 288 uJ, t = 96 ms, 6,144,000 instructions at 64 MHz."""
    assert joules(3.0, 1.8) == pytest.approx(288e-6)
    boot = model().run_boot(constant(0.0), [Work(10 ** 8)], t=5.0)
    assert boot.cut_at_instruction == 6_144_000 == boot.instructions
    assert boot.cut_t == pytest.approx(5.0 + 0.096, rel=1e-12)
    assert boot.consumed_j == pytest.approx(288e-6, rel=1e-12) and boot.harvested_j == 0.0
    assert boot.v_end == pytest.approx(1.8) and boot.cut_during == "work" and boot.cut_event == 0


def test_warning_comes_before_the_cut():
    """POF warning at 2.4 V: dE = 0.5 C (3.0^2 - 2.4^2) = 162 uJ -> 54 ms -> 3,456,000 instructions."""
    boot = model().run_boot(constant(0.0), [Work(2_000_000), Work(10 ** 8)])
    assert boot.warn_at_instruction == int(joules(3.0, 2.4) / 3e-3 * CLOCK) == 3_456_000
    assert boot.warn_t == pytest.approx(0.054, rel=1e-12) and boot.warn_t < boot.cut_t
    assert boot.cut_at_instruction == 6_144_000
    no_warn = dataclasses.replace(model(), warn_v=None).run_boot(constant(0.0), [Work(10 ** 8)])
    assert no_warn.warn_at_instruction is None and no_warn.cut_at_instruction == 6_144_000


def test_cycles_per_instruction_and_explicit_cycles():
    assert model(cycles_per_instruction=2.0).run_boot(constant(0), [Work(10 ** 8)]).cut_at_instruction == 3_072_000
    assert model().run_boot(constant(0), [Work(10 ** 8, cycles=4 * 10 ** 8)]).cut_at_instruction == 1_536_000


def test_discharge_with_harvest_and_a_completed_boot():
    """1 mW in, 3 mW out: net 2 mW, 288 uJ last 144 ms = 9,216,000 instructions."""
    m = model()
    assert m.run_boot(constant(1e-3), [Work(10 ** 8)]).cut_at_instruction == 9_216_000
    done = m.run_boot(constant(1e-3), [Work(1_000_000), Mark("result")])
    assert not done.cut and done.instructions == 1_000_000
    e_end = m.energy(3.0) - 2e-3 * 1_000_000 / CLOCK
    assert done.v_end == pytest.approx(math.sqrt(2 * e_end / C), rel=1e-12)
    assert done.marks == [("result", 1_000_000, done.t_end, done.v_end)]


def test_charge_time_with_constant_harvest():
    """From 1.8 V to 3.0 V at 1 mW in and 1 uW off-state draw: 288 uJ / 0.999 mW."""
    rc = model(off_w=1e-6).recharge(constant(1e-3), 2.0)
    assert rc.t_on == pytest.approx(2.0 + 288e-6 / (1e-3 - 1e-6), rel=1e-12)
    assert rc.harvested_j == pytest.approx(1e-3 * rc.off_s, rel=1e-12)


def test_charge_across_a_gap_in_the_trace():
    """2 mW for 0.1 s (200 uJ), nothing for 0.1 s, then 2 mW: the last 88 uJ take 44 ms -> on at 0.244 s."""
    tr = Piecewise([0.0, 0.1, 0.2], [2e-3, 0.0, 2e-3])
    assert model().recharge(tr, 0.0).t_on == pytest.approx(0.244, rel=1e-12)


def test_never_recharges():
    m = model(off_w=1e-6)
    rc = m.recharge(constant(0.0), 1.0)
    assert rc.t_on is None and rc.off_s is None and "never exceeds" in rc.reason
    dies = Piecewise([0.0, 0.05], [2e-3, 0.0])      # 100 uJ, then nothing for ever
    rc = m.recharge(dies, 0.0)
    assert rc.t_on is None and "no more than the board's off-state draw" in rc.reason
    out = simulate(m, dies, [[Work(10 ** 9)], [Work(10)]])
    assert len(out.boots) == 1 and "no more than the board's off-state draw" in out.stopped


def test_cut_inside_a_flash_write():
    """After 1,000,000 instructions (3 mW), the writes (12 mW x 41 us = 0.492 uJ per word) take what is left."""
    m = model()
    left = joules(3.0, 1.8) - 3e-3 * 1_000_000 / CLOCK
    boot = m.run_boot(constant(0.0), [Work(1_000_000), Mark("commit"), Flash("write", 10_000), Work(5)])
    assert boot.cut_at_instruction == 1_000_000 and boot.cut_during == "write" and boot.cut_event == 2
    assert boot.cut_op_done == int(left / (12e-3 * 41e-6))
    assert boot.cut_t == pytest.approx(1_000_000 / CLOCK + left / 12e-3, rel=1e-12)


def test_a_page_erase_does_not_fit_in_100uF():
    """4 mA x 3 V x 85 ms = 1.02 mJ > 288 uJ: the erase is cut with 0 pages done; 470 uF holds it."""
    m = model()
    boot = m.run_boot(constant(0.0), [Flash("erase", 1)])
    assert boot.cut_during == "erase" and boot.cut_op_done == 0 and boot.cut_at_instruction == 0
    assert not model(capacitor_f=470e-6).run_boot(constant(0.0), [Flash("erase", 1)]).cut


def test_capacitor_is_not_charged_above_vmax():
    """10 mW into a full 3.0 V capacitor while asleep: 3.6 V after 198 uJ (19.8 ms); the rest is shed."""
    m = model()
    boot = m.run_boot(constant(10e-3), [Sleep(1.0)])
    assert boot.v_end == pytest.approx(3.6) and not boot.cut
    assert boot.wasted_j == pytest.approx(10e-3 * (1.0 - joules(3.6, 3.0) / 10e-3), rel=1e-9)


def test_campaign_resuming_work_by_hand():
    """20 M instructions, progress kept at each cut (as if checkpointed for free), 1 mW in, 3 mW out: boots of
    9,216,000 + 9,216,000 + 1,568,000 instructions, two recharges of 288 uJ / 1 mW = 0.288 s."""
    total, done = 20_000_000, [0]

    def next_boot(i, prev):
        done[0] += prev.instructions if prev is not None else 0
        return None if done[0] >= total else [Work(total - done[0])]

    camp = simulate(model(), constant(1e-3), next_boot)
    assert [b.instructions for b in camp.boots] == [9_216_000, 9_216_000, 1_568_000]
    assert [b.cut for b in camp.boots] == [True, True, False]
    assert [r.off_s for r in camp.recharges] == [pytest.approx(0.288), pytest.approx(0.288)]
    assert camp.t_end == pytest.approx(2 * (0.144 + 0.288) + 1_568_000 / CLOCK, rel=1e-12)
    assert camp.summary()["cuts"] == 2 and camp.summary()["instructions"] == total


def test_energy_is_conserved_over_a_campaign():
    """harvested - consumed - wasted = E(end) - E(start), under the bursty trace with flash work."""
    m = model(capacitor_f=470e-6, off_w=1.2e-6, sleep_w=4.5e-6)
    tl = timeline([(100_000, "erase", 1), (200_000, "write", 300), (200_000, "commit"),
                   (3_000_000, "write", 300), (3_000_000, "commit"), (4_500_000, "result")], 4_500_000)
    camp = simulate(m, parse_harvester("rf:seed=2"), [tl + [Sleep(0.2)]] * 25, t=3.0)
    wasted = sum(p.wasted_j for p in camp.phases)
    t, v = camp.series()
    assert t == sorted(t) and t[0] == 3.0 and t[-1] == camp.t_end
    assert camp.harvested_j - camp.consumed_j - wasted == pytest.approx(m.energy(v[-1]) - m.energy(v[0]),
                                                                        rel=1e-9, abs=1e-12)
    assert camp.summary()["cuts"] > 0 and len(camp.boots) == 25


def test_timeline_from_events():
    assert timeline([(10, "erase"), (10, "write", 4), (25, "commit")], 40) == [
        Work(10), Flash("erase", 1), Flash("write", 4), Work(15), Mark("commit"), Work(15)]
    with pytest.raises(TinyexitError, match="goes back"):
        timeline([(10, "erase"), (5, "commit")], 40)
    with pytest.raises(TinyexitError, match="below the last event"):
        timeline([(10, "erase")], 5)


def test_from_board_and_warn_level():
    board = load_board("nrf52840")
    m = EnergyModel.from_board(board)
    assert m.run_w == pytest.approx(3.3e-3 * 3.0) and m.capacitor_f == pytest.approx(470e-6)
    assert m.erase_w * m.erase_s == pytest.approx(4e-3 * 3.0 * 85e-3)
    assert EnergyModel.from_board(board, capacitor_f=100e-6).usable_j == pytest.approx(288e-6)
    # reserve(v) = 0.5 x 470 uF x (v^2 - 1.8^2) >= 300 uJ  <=>  v >= 2.125 V -> the 2.2 V level
    levels = [1.7 + 0.1 * i for i in range(12)]
    assert m.warn_level_for(300e-6, levels) == pytest.approx(2.2)
    assert m.warn_level_for(10e-3, levels) is None
    with pytest.raises(TinyexitError, match="no energy: section"):
        EnergyModel.from_board(load_board("mps2-an386"))


def test_plot_writes_a_png(tmp_path):
    m = model()
    tr = parse_harvester("rf:seed=1")
    camp = simulate(m, tr, [[Work(3_000_000), Mark("commit"), Work(3_000_000), Mark("result")]] * 6)
    plot_campaign(camp, m, tr, tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_just_in_time_loop_keeps_the_warning_in_place():
    """The loop energy.py documents: the warning found on the uninterrupted timeline stays where it is when the
    firmware's reaction (a checkpoint after the warning) replaces what followed it, and the reserve between
    V_warn and V_off pays for the checkpoint (here 200 words: 98.4 uJ < the 162 uJ reserve at 100 uF)."""
    m = model()
    tr = constant(0.0)
    first = m.run_boot(tr, [Work(10 ** 8)])
    w = first.warn_at_instruction
    reaction = [Work(w), Flash("write", 200), Mark("commit"), Work(10 ** 8)]
    second = m.run_boot(tr, reaction)
    assert second.warn_at_instruction == w == 3_456_000
    assert second.marks[0][:2] == ("commit", w) and second.cut_at_instruction > w
    assert m.reserve_j() == pytest.approx(joules(2.4, 1.8)) and 200 * 12e-3 * 41e-6 < m.reserve_j()
