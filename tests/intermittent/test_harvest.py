"""Harvesters: spec strings, CSV traces and their one-line errors, exact energy integrals (against sums written
here and a closed form), seeded traces reproducible and seed-dependent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tinyexit.intermittent.harvest import HarvesterError, Piecewise, Rf, Solar, constant, parse_harvester, read_csv


def test_constant_specs():
    assert parse_harvester("constant").power(0) == pytest.approx(1e-3)
    for spec in ("constant:2mW", "constant:power=2mW", "constant:0.002", "constant:2000uW"):
        tr = parse_harvester(spec)
        assert tr.power(123.4) == pytest.approx(2e-3)
        assert tr.energy(0.5, 3.0) == pytest.approx(2e-3 * 2.5, rel=1e-12)


def test_csv_energy_is_the_hand_sum(tmp_path):
    f = tmp_path / "trace.csv"
    f.write_text("time_s,power_W\n0,1e-3\n2,0\n3,4e-3\n")
    tr = parse_harvester(str(f))
    # piecewise-constant: 1 mW on [0,2), 0 on [2,3), 4 mW from 3 on (the last row holds for ever)
    assert tr.energy(1.0, 5.0) == pytest.approx(1.0 * 1e-3 + 1.0 * 0 + 2.0 * 4e-3, rel=1e-12)
    assert tr.energy(0.0, 2.0) == pytest.approx(2e-3, rel=1e-12)
    assert [tr.power(t) for t in (0, 1.999, 2, 2.5, 3, 1e6)] == [1e-3, 1e-3, 0, 0, 4e-3, 4e-3]
    assert list(tr.segments(1.0, 4.0)) == [(1.0, 2.0, 1e-3), (2.0, 3.0, 0.0), (3.0, 4.0, 4e-3)]


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("", "the first line must be the header 'time_s,power_W'"),
    ("t,p\n0,1\n", "the first line must be the header 'time_s,power_W' (got 't,p')"),
    ("time_s,power_W\n", "no rows after the header"),
    ("time_s,power_W\n0,abc\n", ":2: '0,abc' is not two numbers"),
    ("time_s,power_W\n0,1,2\n", ":2: '0,1,2' is not two numbers"),
    ("time_s,power_W\n0,1e-3\n1,nan\n", ":3: time and power must be finite"),
    ("time_s,power_W\n0,1e-3\n1,-1e-3\n", ":3: negative power"),
    ("time_s,power_W\n0,1e-3\n2,0\n2,1e-3\n", ":4: time 2.0 s does not increase"),
    ("time_s,power_W\n0,1e-3\n2,0\n1,1e-3\n", ":4: time 1.0 s does not increase"),
    ("time_s,power_W\n0.5,1e-3\n", ":2: the first row must be at time 0"),
])
def test_csv_errors_are_one_line(tmp_path, text, message):
    f = tmp_path / "bad.csv"
    if text is not None:
        f.write_text(text)
    with pytest.raises(HarvesterError) as exc:
        read_csv(f)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert str(f) in str(exc.value)


@pytest.mark.parametrize("spec, message", [
    ("wind", "unknown harvester 'wind'"),
    ("rf:seed=x", "seed='x' is not an integer"),
    ("rf:speed=3", "unknown parameter 'speed'"),
    ("constant:3mA", "is not a power in W"),
    ("solar:daylight=90000", "need 0 < daylight <= day"),
    ("missing.csv", "does not exist"),
])
def test_spec_errors(spec, message):
    with pytest.raises(HarvesterError) as exc:
        parse_harvester(spec)
    assert message in str(exc.value)


@pytest.mark.parametrize("spec", ["solar", "rf", "solar:seed=3,day=600,daylight=400,step=0.5", "rf:seed=3,on_s=0.02"])
def test_seeded_traces_reproducible(spec):
    a, b = parse_harvester(spec), parse_harvester(spec)
    # b is queried far ahead first: a chunk does not depend on which chunks were generated before it
    far = 5 * a.chunk_s + 1.0
    tb_far = b.steps(far, far + 30.0)
    ta, pa = a.steps(0.0, 200.0)
    tb, pb = b.steps(0.0, 200.0)
    assert np.array_equal(ta, tb) and np.array_equal(pa, pb)
    ta_far = a.steps(far, far + 30.0)
    assert all(np.array_equal(x, y) for x, y in zip(ta_far, tb_far))
    assert a.energy(3.0, far) == b.energy(3.0, far)


@pytest.mark.parametrize("kind", ["solar", "rf"])
def test_different_seeds_differ(kind):
    t0, t1 = (30000.0, 30600.0) if kind == "solar" else (0.0, 60.0)   # solar: during the day
    a, b = parse_harvester(f"{kind}:seed=1"), parse_harvester(f"{kind}:seed=2")
    assert a.energy(t0, t1) != b.energy(t0, t1)
    (ta, pa), (tb, pb) = a.steps(t0, t1), b.steps(t0, t1)
    assert not (np.array_equal(ta, tb) and np.array_equal(pa, pb))


@pytest.mark.parametrize("trace", [Solar(seed=4, day_s=900, daylight_s=600, step_s=0.7), Rf(seed=5, chunk_s=7.0),
                                   Piecewise([0, 0.25, 1.5], [3e-3, 0, 1e-3])],
                         ids=["solar", "rf", "piecewise"])
def test_energy_equals_the_sum_over_pieces(trace):
    """energy() (cumulative sums per chunk) against a sum of power x duration over the pieces, written here."""
    for t0, t1 in [(0.0, 10.0), (3.3, 1234.5), (899.9, 900.1), (5.0, 5.0)]:
        hand = sum((b - a) * p for a, b, p in trace.segments(t0, t1))
        assert trace.energy(t0, t1) == pytest.approx(hand, rel=1e-9, abs=1e-15)


def test_cloudless_solar_day_is_the_closed_form():
    """Without clouds a day gives peak x 2 x daylight / pi (the integral of half a sine), and nothing at night."""
    tr = Solar(peak_w=5e-3, day_s=1000.0, daylight_s=600.0, step_s=0.3, cloud_min=1.0, cloud_max=1.0)
    assert tr.energy(0.0, 1000.0) == pytest.approx(5e-3 * 2 * 600.0 / math.pi, rel=1e-12)
    assert tr.energy(600.0, 1000.0) == 0.0
    assert tr.energy(1000.0, 3000.0) == pytest.approx(2 * 5e-3 * 2 * 600.0 / math.pi, rel=1e-12)
    assert tr.power(300.0) == pytest.approx(5e-3, rel=1e-3)


def test_clouds_dim_the_sun():
    clear = Solar(seed=1, cloud_min=1.0, cloud_max=1.0).energy(0, 86400)
    cloudy = Solar(seed=1).energy(0, 86400)
    assert 0.5 * clear < cloudy < clear


def test_rf_is_bursty_with_the_expected_mean():
    tr = Rf(on_w=5e-3, seed=7, mean_on_s=0.1, mean_off_s=0.4)
    _, powers = tr.steps(0.0, 600.0)
    assert set(np.unique(powers)) == {0.0, 5e-3}
    # about 6,000 on/off cycles: the on fraction is 0.2 within a few percent
    assert tr.energy(0.0, 3600.0) / 3600.0 == pytest.approx(5e-3 * 0.2, rel=0.05)


def test_constant_zero_and_names():
    assert constant(0.0).energy(0, 1e9) == 0.0
    assert str(parse_harvester("rf:seed=3")) == "rf:on=5mW,seed=3"


def test_solar_start_shifts_the_day():
    later, day = parse_harvester("solar:seed=2,start=28800"), Solar(seed=2)
    assert later.energy(10.0, 500.0) == day.energy(28810.0, 29300.0) > 0
    assert later.power(100.5) == day.power(28900.5)
    assert np.allclose([(a + 28800.0, b + 28800.0, p) for a, b, p in later.segments(0.0, 30.0)],
                       list(day.segments(28800.0, 28830.0)), rtol=1e-12, atol=0)
