"""The stream's pre-model gate (tinyexit.stream_gate): its integer rule by hand, the posterior a skipped hop adds,
validation recordings from the validation voices only, and the calibration on them (the chosen gate is the
cheapest that keeps the ungated stream's false rejects and false accepts; the C host build measures the same on
the chosen gate); the CLI calibrates, stores the gate in the run and refuses test recordings in one line."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyexit import stream_app as sa
from tinyexit import stream_gate as sg
from tinyexit.errors import TinyexitError

REPO = Path(__file__).resolve().parents[1]


def features(c0_rows) -> np.ndarray:
    """int8 [H, 49, 10] whose c0 column is given per hop; the other MFCCs are noise the gate must ignore."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (len(c0_rows), 49, 10)).astype(np.int8)
    x[:, :, 0] = np.asarray(c0_rows, np.int8)
    return x


def test_gate_rule_by_hand():
    quiet = [-100] * 49
    late = [-100] * 40 + [-60] * 9            # energy in the newest frames
    early = [-60] * 9 + [-100] * 40           # energy only in the oldest frames
    louder = [-80] * 49                       # the floor rises
    x = features([quiet, late, early, louder, louder, [-120] * 49])
    g = sg.Gate("energy", margin=30, first=24, rise=2)
    is_open, floor = sg.decide(x, g)
    # floor (Q8): -25600; -25600; -25600; -25600 + (-20480 + 25600) / 4 = -24320; -24320 + 3840 / 4 = -23360;
    # then -30720 (falls at once). open: hi * 256 - floor >= 30 * 256 = 7680
    assert floor.tolist() == [-25600, -25600, -25600, -24320, -23360, -30720]
    # hi: -100, -60, -100 (frames 24..48 only), -80, -80, -120
    assert is_open.tolist() == [False, True, False, False, False, False]
    assert sg.decide(x, sg.Gate("energy", margin=30, first=0, rise=2))[0].tolist() == [False, True, True, False,
                                                                                        False, False]
    assert sg.decide(x, sg.Gate("energy", margin=3, first=24, rise=2))[0].tolist() == [False, True, False, True,
                                                                                       True, False]
    # rise 0: the floor is the window's quietest frame (-80 * 256 at hop 3): louder windows stay closed
    assert sg.decide(x, sg.Gate("energy", margin=3, first=24, rise=0))[0].tolist()[3:5] == [False, False]
    assert sg.decide(x, sg.Gate())[0].all()
    with pytest.raises(TinyexitError, match="first frame 0..48"):
        sg.Gate("energy", margin=10, first=49).check()
    with pytest.raises(TinyexitError, match="use one of off, energy"):
        sg.Gate("loud").check()


def test_a_skipped_hop_smooths_as_silence():
    classes = ["_silence_", "_unknown_", "yes", "no"]
    q = sg.skipped_posterior(classes, {"scale": 1 / 256, "zero_point": -128})
    assert q.tolist() == [127, -128, -128, -128]                 # p = 1 clamps to 127; p = 0 is the zero point
    assert sg.skipped_posterior(classes[::-1], {"scale": 0.01, "zero_point": -10}).tolist() == [-10, -10, -10, 90]
    with pytest.raises(TinyexitError, match="no _silence_"):
        sg.skipped_posterior(["yes", "no"], {"scale": 1 / 256, "zero_point": -128})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests._tiny_kws_run import make_tiny_kws_run
    from tests.data.test_streams import tone_layout
    from tinyexit.data.streams import make_streams
    run = make_tiny_kws_run(tmp_path_factory.mktemp("gate") / "run")
    root = tone_layout(tmp_path_factory.mktemp("tones") / "sc")
    val = tmp_path_factory.mktemp("v") / "val"
    make_streams(val, root, minutes=0.2, snrs=(10.0,), seed=4, split="validation")
    test = tmp_path_factory.mktemp("t") / "test"
    make_streams(test, root, minutes=0.2, snrs=(10.0,), seed=4)
    return run, root, val, test


def test_validation_recordings_hold_validation_voices_only(tiny):
    _, root, val, test = tiny
    assert json.loads((val / "streams.json").read_text())["split"] == "validation"
    val_list = set((root / "validation_list.txt").read_text().split())
    with open(val / "clean.csv", newline="") as f:
        srcs = [r["source"] for r in csv.DictReader(f)]
    assert srcs and set(srcs) <= val_list
    with pytest.raises(TinyexitError, match="validation split only"):
        sg.read_validation(test)


CFG = sa.StreamSettings(threshold=0.1, smooth=2, refractory_s=0.5)
GRID = sg.candidates(margins=(0, 8, 24, 60, 255), firsts=(0, 30))


def self_labelled(run, tmp_path, seed: int):
    """(name, pcm, truth CSV): noise with tone bursts whose ground truth is what the ungated stream detects (an
    untrained model detects nothing real): the reference has no false reject, a gate that skips a detecting hop
    has one."""
    from tests.test_stream_app import synthetic_audio
    pcm = synthetic_audio(10.0, seed=seed)
    classes = sa.as_run(run).manifest()["classes"]
    hops = sa.mirror(run, pcm, CFG, tmp_path / f"m{seed}")
    truth = tmp_path / f"s{seed}.csv"
    rows = [(round((sa.FIRST + h.index * CFG.hop) / sa.SAMPLE_RATE, 6), classes[h.det]) for h in hops if h.det >= 0]
    truth.write_text("onset_s,offset_s,label\n" + "".join(f"{t - 0.05},{t},{c}\n" for t, c in rows))
    assert len(rows) >= 3
    return f"s{seed}", pcm, truth


def test_calibration_picks_the_cheapest_gate_that_keeps_the_streams_errors(tiny, tmp_path):
    run = tiny[0]
    recs = [self_labelled(run, tmp_path, seed) for seed in (0, 1)]
    res = sg.calibrate(sa.as_run(run), recs, CFG, tmp_path, grid=GRID, progress=False)
    ref = res["reference"]
    table = res["candidates"]
    assert len(table) == len(GRID) and len(ref) == len(recs) == 2
    for t in table:
        want = all(r["false_reject_rate"] <= b["false_reject_rate"] + 0.005 and
                   r["false_accepts_per_hour"] <= b["false_accepts_per_hour"] + 1.0
                   for r, b in zip(t["recordings"], ref))
        assert t["ok"] == want
    assert all(r["false_rejects"] == 0 for r in ref)
    assert table[0]["ok"] and not all(t["ok"] for t in table)     # margin 0 opens every hop; 255 skips detections
    chosen = res["chosen"]
    assert chosen["macs_per_second"] == min(t["macs_per_second"] for t in table if t["ok"])
    # margin 0 opens every hop: the reference's MACs
    assert table[0]["macs_per_second"] == pytest.approx(sum(r["macs_per_second"] for r in ref))
    # the host build of tx_stream.c with the chosen gate measures what the calibration measured
    gate = sg.Gate.from_dict(res["gate"])
    cfg = sa.StreamSettings(**{**CFG.__dict__, "gate": gate})
    exe = sa.build_stream_host(run, tmp_path / "host", cfg)
    for (name, pcm, truth), row in zip(recs, chosen["recordings"]):
        doc = sa.summary(run, sa.run_host(exe, pcm, cfg), pcm, cfg, truth_csv=truth)
        assert (doc["false_rejects"], doc["false_accepts_per_hour"]) == (row["false_rejects"],
                                                                         row["false_accepts_per_hour"])
        assert doc["macs_per_second"] == pytest.approx(row["macs_per_second"])
        assert doc["gate"]["skipped"] / doc["hops"] == pytest.approx(row["skipped"])


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tinyexit", "stream", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_calibrates_the_gate_into_the_run(tiny, tmp_path):
    import shutil
    run, _, val, test = tiny
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("firmware"))
    wav = val / "clean.wav"
    p = _cli([str(copy), "--wav", str(wav), "--gate", "energy", "--emulate"], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no calibrated gate" in p.stderr
    p = _cli([str(copy), "--calibrate-gate", "--gate-streams", str(test)], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "validation split only" in p.stderr
    p = _cli([str(copy), "--calibrate-gate", "--gate-streams", str(val), "--threshold", "0.05"], tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((copy / "stream_gate.json").read_text())
    assert doc["validation_streams"] == str(val) and doc["settings"]["threshold"] == 0.05
    assert sg.run_gate(sa.as_run(copy)) == sg.Gate.from_dict(doc["gate"])
    assert "wrote" in p.stdout and str(copy / "stream_gate.json") in p.stdout
    p = _cli([str(copy)], tmp_path)
    assert p.returncode == 2 and "--wav" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_benchmark_measures_every_config_and_checks_the_host_build(tiny, tmp_path):
    """benchmarks/kws_stream_gate.py end to end on tiny recordings: every config on every test recording, the
    host build equal to the mirror on every hop, the goal judged from the figures it prints."""
    import importlib.util
    run, _, val, test = tiny
    spec = importlib.util.spec_from_file_location("kws_stream_gate", REPO / "benchmarks" / "kws_stream_gate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "g.json"
    assert bench.main(["--run", str(run), "--streams", str(test), "--val-streams", str(val), "--recordings",
                       "clean,snr10", "--json", str(out), "--png", str(tmp_path / "g.png"), "--threshold", "0.1"]) == 0
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["recordings"]] == ["clean", "snr10"]
    for r in doc["recordings"]:
        assert r["hops_equal_host"] == r["hops"] > 0
        c = r["configs"]
        assert set(c) == {"always-final", "early exit", "gate", "gate + early exit", "oracle gate",
                          "oracle gate + early exit"}
        base = c["always-final"]
        for v in c.values():
            assert v["goal"] == (1 - v["macs_per_second"] / base["macs_per_second"] >= 0.7 and
                                 v["false_reject_rate"] <= base["false_reject_rate"] + 0.005 and
                                 v["false_accepts_per_hour"] <= base["false_accepts_per_hour"] + 1)
        assert c["gate"]["macs_per_second"] == pytest.approx(base["macs_per_second"] * (1 - c["gate"]["skipped"]))
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert bench.main(["--run", str(run), "--streams", str(val)]) == 2        # validation recordings: refused
