"""The streaming keyword-spotting app (tinyexit.stream_app, `tinyexit stream`): the firmware's C built for the
host equals the Python mirror (C front end host build + tflite_micro + the Python policy + the detection rule)
on every hop; the emulated nRF52840 equals the host build on every hop; the CLI refuses bad input in one line."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tinyexit import stream_app as sa
from tinyexit.errors import TinyexitError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kws_run(tmp_path_factory):
    from tests._tiny_kws_run import make_tiny_kws_run
    return make_tiny_kws_run(tmp_path_factory.mktemp("stream") / "run")


def synthetic_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with tone bursts and a loud click: quiet, loud and clipped frames."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sa.SAMPLE_RATE)
    t = np.arange(n) / sa.SAMPLE_RATE
    x = rng.normal(0, 300, n) + 6000 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0.3)
    x[n // 2:n // 2 + 200] = 40000
    return np.clip(x, -32768, 32767).astype(np.int16)


def write_wav(path: Path, x: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(x, "<i2").tobytes())
    return path


LOW = sa.StreamSettings(threshold=0.05, smooth=2, refractory_s=0.5)   # an untrained model detects now and then


def test_detection_rule_by_hand():
    kw = [1, 1, 0]
    post = np.array([[-100, -120, -128], [-60, -128, -128], [-60, -128, -128], [-128, -128, 50], [-50, -40, -128]])
    # smooth 2: sums per hop [-100,-120,-128]/1, [-160,-248,-256]/2, [-120,..]/2, [-188,-256,-78]/2, [-178,-168,-78]/2
    # threshold_q -90: hop 0 -100 < -90; hop 1 -160 >= -180 -> class 0; hop 2 -120 >= -180 but refractory 2;
    # hop 3 argmax is class 2 (not a keyword); hop 4 argmax class 2 again
    assert sa.detect_q(post, kw, 2, -90, 2) == [-1, 0, -1, -1, -1]
    assert sa.detect_q(post, kw, 2, -90, 1) == [-1, 0, 0, -1, -1]
    assert sa.detect_q(post, kw, 1, -90, 1) == [-1, 0, 0, -1, 1]


def test_hop_windows_follow_the_ring():
    cfg = sa.StreamSettings(hop_ms=250)
    x = np.arange(16000 + 3 * 4000, dtype=np.int64).astype(np.int16)
    w = sa.hop_windows(x, cfg)
    assert len(w) == 4 and w[0][0] == 0 and w.shape[1] == 16000 and not w[:, 15840:].any()
    # after 20000 samples the newest complete frame starts at 320 * 61 = 19520 (ends 20000): the ring starts 48 earlier
    assert int(w[1][0]) == 320 * (61 - 48)
    # after 24000 samples: frames 0..73, frame 73 ends at 23840
    assert int(w[2][0]) == 320 * (73 - 48)


def test_host_build_equals_python_mirror(kws_run, tmp_path):
    pcm = synthetic_audio(4.0)
    exe = sa.build_stream_host(kws_run, tmp_path / "host", LOW)
    host = sa.run_host(exe, pcm, LOW)
    py = sa.mirror(kws_run, pcm, LOW, tmp_path / "mirror")
    assert len(host) == len(py) == sa.num_hops(len(pcm), LOW) == 13
    assert [h.key() for h in host] == [h.key() for h in py]
    assert [h.macs for h in host] == [h.macs for h in py]
    assert len({h.fhash for h in host}) == len(host)          # the features change every hop
    assert any(h.det >= 0 for h in host), "the settings should make the untrained model detect something"
    doc = sa.summary(kws_run, host, pcm, LOW, host=py)
    assert doc["hops_equal_host"] == doc["hops"] == 13
    assert doc["macs_per_second"] <= doc["macs_per_second_no_exit"] * 1.01


def recalibrated(kws_run, tmp_path, monkeypatch, policy: str):
    """A copy of the tiny run calibrated with `policy` on the stand-in splits."""
    import tinyexit.run
    from tests._tiny_kws_run import stand_in_splits
    from tinyexit.policy.calibrate import calibrate_run
    run = tmp_path / "run"
    shutil.copytree(kws_run, run, ignore=shutil.ignore_patterns("firmware"))
    data = stand_in_splits()
    monkeypatch.setattr(tinyexit.run, "load_split", lambda r, split: data[split])
    assert calibrate_run(run, epsilon=0.5, policy=policy)["policy"] == policy
    return run


@pytest.mark.parametrize("policy", ["difference", "entropy"])
def test_host_build_equals_python_mirror_with_other_policies(kws_run, tmp_path, monkeypatch, policy):
    """The temporal rules (tx_temporal.h: the decision is the rule's, the state lives across hops) and another
    static rule, recalibrated on a copy of the run."""
    run = recalibrated(kws_run, tmp_path, monkeypatch, policy)
    pcm = synthetic_audio(4.0)
    host = sa.run_host(sa.build_stream_host(run, tmp_path / "host", LOW), pcm, LOW)
    py = sa.mirror(run, pcm, LOW, tmp_path / "mirror")
    assert len(host) == len(py) == 13
    assert [h.key() for h in host] == [h.key() for h in py]


def bursty_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Quiet noise with a 0.3-s tone burst every 2.5 s: windows with and without energy above the floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sa.SAMPLE_RATE)
    x = rng.normal(0, 200, n)
    for start in range(int(0.4 * sa.SAMPLE_RATE), n, int(2.5 * sa.SAMPLE_RATE)):
        m = min(n, start + int(0.3 * sa.SAMPLE_RATE))
        x[start:m] += 8000 * np.sin(2 * np.pi * 700 * np.arange(m - start) / sa.SAMPLE_RATE)
    return np.clip(x, -32768, 32767).astype(np.int16)


GATED = sa.StreamSettings(threshold=0.05, smooth=2, refractory_s=0.5,
                          gate=sa.Gate("energy", margin=20, first=24, rise=2))


@pytest.mark.parametrize("policy", ["max_softmax", "difference"])
def test_host_build_equals_python_mirror_with_the_gate(kws_run, tmp_path, monkeypatch, policy):
    """The pre-model gate in C (tx_stream.c) and in Python (stream_gate.decide + replay) agree on every hop: the
    gate's decision and noise floor, the features, exit, class and detection; skipped hops run no model (exit -1,
    0 MACs, the silence class); with a temporal rule, whose state only the inferred hops advance."""
    run = kws_run if policy == "max_softmax" else recalibrated(kws_run, tmp_path, monkeypatch, policy)
    pcm = bursty_audio(8.0)
    host = sa.run_host(sa.build_stream_host(run, tmp_path / "host", GATED), pcm, GATED)
    py = sa.mirror(run, pcm, GATED, tmp_path / "mirror")
    assert len(host) == len(py) == 29
    assert [h.key() for h in host] == [h.key() for h in py]
    assert [h.macs for h in host] == [h.macs for h in py]
    skipped = [h for h in host if h.gate == 0]
    assert 5 <= len(skipped) <= len(host) - 5, "the audio should both open and close the gate"
    silence = list(sa.as_run(run).manifest()["classes"]).index("_silence_")
    assert all(h.exit == -1 and h.macs == 0 and h.cls == silence for h in skipped)
    assert all(h.exit >= 0 and h.macs > 0 and h.gate == 1 for h in host if h not in skipped)
    # the floor follows the quiet noise, far below the bursts: every window with a burst in its newest 25 frames
    # (the 0.3-s burst ends at least 0.02 s before the hop's end, within the last 0.5 s) opens the gate
    ends = [(sa.FIRST + h.index * GATED.hop) / sa.SAMPLE_RATE for h in host]
    burst = [any(0 < e - (b + 0.3) and e - b < 0.5 + 0.3 - 0.05 for b in np.arange(0.4, 8.0, 2.5)) for e in ends]
    assert sum(burst) >= 5 and all(h.gate == 1 for h, b in zip(host, burst) if b)
    doc = sa.summary(run, host, pcm, GATED, host=py)
    assert doc["hops_equal_host"] == 29 and doc["gate"]["skipped"] == len(skipped)
    assert doc["macs_per_second"] < doc["macs_per_second_no_exit"] * (1 - len(skipped) / len(host)) + 1


def _emulated_and_host(run, tmp_path, pcm, cfg, hops: int):
    """The stream firmware of `cfg` on the emulated nRF52840 and its host build: both run `pcm` and agree on every
    hop (features, exit, decision, gate). -> (board, firmware, its hops, the run's result, the feeder, host hops)."""
    from tinyexit.boards import load_board
    from tinyexit.targets import get_runner
    board = load_board("nrf52840", emulate=True)
    fw = sa.build_stream(run, board, tmp_path / "fw", cfg)
    fw_hops, res, feeder = sa.run_firmware(fw, get_runner(board, None, needs=("send",)), pcm, cfg, timeout=300)
    host = sa.run_host(sa.build_stream_host(run, tmp_path / "host", cfg), pcm, cfg)
    assert len(fw_hops) == len(host) == hops
    assert [h.key() for h in fw_hops] == [h.key() for h in host]
    return board, fw, fw_hops, res, feeder, host


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_emulated_nrf52840_equals_the_host(kws_run, tmp_path):
    from tinyexit.targets import get_runner
    pcm = synthetic_audio(2.0, seed=1)
    board, fw, fw_hops, res, feeder, host = _emulated_and_host(kws_run, tmp_path, pcm, LOW, 5)
    assert "TX NEED i=4 n=4000" in res.output
    assert (feeder.next, feeder.sent) == (5, 16000 + 4 * 4000)   # exactly the samples asked for, chunk by chunk
    # paced at real time: hops 1..4 wait for their 250 ms of audio each
    t0 = time.monotonic()
    rt_hops, _, rt = sa.run_firmware(fw, get_runner(board, None, needs=("send",)), pcm, LOW, timeout=300,
                                     realtime=True)
    assert time.monotonic() - t0 >= 4 * 0.25 and [h.key() for h in rt_hops] == [h.key() for h in host]
    # where a hop's time goes: the front end's windows group into hops by the protocol (else profile() refuses)
    from tinyexit import stream_profile
    prof = stream_profile.profile(fw, get_runner(board, None, needs=("send",)), pcm, LOW, board.clock_hz, timeout=300)
    fe, model = prof["per_hop"]["frontend_instructions"], prof["per_hop"]["model_instructions"]
    assert prof["hops"] == len(fe) == len(model) == 5
    assert fe[0] > 3 * max(fe[1:])                      # hop 0 computes 50 frames, later hops 12 or 13
    assert all(c >= i for c, i in zip(prof["per_hop"]["model_cycles"], model))   # a cycle per instruction at least
    budget = board.clock_hz * 0.25
    assert prof["duty_cycle"] == pytest.approx(np.mean([(a + b) / budget for a, b in zip(
        prof["per_hop"]["frontend_cycles"][1:], prof["per_hop"]["model_cycles"][1:])]))
    assert stream_profile.plot(prof, fw_hops, ["a"] * 12, tmp_path / "t.png").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_emulated_nrf52840_with_the_gate_equals_the_host(kws_run, tmp_path):
    """The gated firmware on the emulated nRF52840: every hop equal to the host build (gate, floor, features, exit,
    decision); the profile puts the model's instructions on the open hops only."""
    from tinyexit import stream_profile
    from tinyexit.targets import get_runner
    pcm = bursty_audio(4.0, seed=2)
    board, fw, fw_hops, _, _, _ = _emulated_and_host(kws_run, tmp_path, pcm, GATED, 13)
    assert 0 < sum(h.gate == 0 for h in fw_hops) < 13
    prof = stream_profile.profile(fw, get_runner(board, None, needs=("send",)), pcm, GATED, board.clock_hz,
                                  timeout=300, hops=fw_hops)
    model = prof["per_hop"]["model_instructions"]
    assert all((m > 0) == (h.gate == 1) for m, h in zip(model, fw_hops))


def test_front_end_windows_per_hop_follow_the_protocol():
    from tinyexit import stream_profile
    assert stream_profile.windows_per_hop(3, sa.StreamSettings(hop_ms=250)) == [51, 14, 14]   # 16000/320, 4000/320
    assert stream_profile.windows_per_hop(2, sa.StreamSettings(hop_ms=20)) == [51, 2]


def test_feeder_sends_each_chunk_on_request_and_paces_real_time():
    pcm = np.arange(16000 + 3 * 4000, dtype=np.int16)
    now, slept = [100.0], []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt
    f = sa.StreamFeeder(pcm, sa.StreamSettings(hop_ms=250), realtime=True, clock=lambda: now[0], sleep=sleep)
    assert f.feed(b"TX STREAM READY hop=4000 first=16000\n") == (4).to_bytes(4, "little")
    assert f.feed(b"TX BEGIN hops=4\nTX NE") == b""                 # half a line: nothing yet
    assert f.feed(b"ED i=0 n=16000\n") == pcm[:16000].tobytes() and slept == []
    now[0] += 0.1                                                   # the firmware computes hop 0 in 0.1 s
    assert f.feed(b"TX H i=0\nTX NEED i=1 n=4000\n") == pcm[16000:20000].tobytes()
    assert slept == [pytest.approx(0.15)]                           # the chunk's audio ends 0.25 s after hop 0
    now[0] += 0.5                                                   # a slow hop: 0.25 s behind the microphone
    assert f.feed(b"TX NEED i=2 n=4000\n") == pcm[20000:24000].tobytes() and f.lag_s == pytest.approx(0.25)
    with pytest.raises(TinyexitError, match="expected hop 3"):
        f.feed(b"TX NEED i=3 n=3200\n")                           # another hop size: other stream settings
    with pytest.raises(TinyexitError, match="expected hop 0 .16000 samples"):
        sa.StreamFeeder(pcm, sa.StreamSettings()).feed(b"TX NEED i=3 n=4000\n")


def _cli(args, cwd):
    import os
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tinyexit", "stream", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_cli_refuses_bad_input_in_one_line(kws_run, tmp_path):
    good = write_wav(tmp_path / "good.wav", synthetic_audio(1.5))
    cases = {
        "does not exist": [str(tmp_path / "norun"), "--wav", str(good), "--emulate"],
        "16000 Hz mono": [str(kws_run), "--wav", str(write_wav(tmp_path / "r8k.wav", synthetic_audio(1.5), 8000)),
                          "--emulate"],
        "mono": [str(kws_run), "--wav", str(write_wav(tmp_path / "st.wav", synthetic_audio(2.0), channels=2)),
                 "--emulate"],
        "not a readable WAV": [str(kws_run), "--wav", str(tmp_path / "junk.wav"), "--emulate"],
        "at least 1 s": [str(kws_run), "--wav", str(write_wav(tmp_path / "short.wav", synthetic_audio(0.5))),
                         "--emulate"],
        "--hop-ms": [str(kws_run), "--wav", str(good), "--emulate", "--hop-ms", "5"],
    }
    (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
    for want, args in cases.items():
        p = _cli(args, tmp_path)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and want in lines[0], (want, p.stderr)


def _with_level(kws_run, tmp_path, level: str) -> Path:
    """A copy of the tiny run whose model.json says it was trained with the front-end level `level`."""
    import json
    run = tmp_path / f"run-{level.replace(':', '-')}"
    shutil.copytree(kws_run, run, ignore=shutil.ignore_patterns("firmware"))
    meta = json.loads((run / "model.json").read_text())
    meta["data"]["level"] = level
    (run / "model.json").write_text(json.dumps(meta))
    return run


def test_the_stream_divides_by_the_runs_level(kws_run, tmp_path):
    """A run trained with front_end.level fixed:3000 streams with 3000: the host build's features at every hop are
    the C front end's at that level (computed here from the hop's ring of samples), not at the default 8192; a
    level that contradicts the run's and a running-peak run are refused in one line."""
    from tinyexit import frontend
    run = _with_level(kws_run, tmp_path, "fixed:3000")
    pcm = synthetic_audio(2.5)
    host = sa.run_host(sa.build_stream_host(run, tmp_path / "host", LOW), pcm, LOW)
    qp = sa.as_run(run).manifest()["segments"][0]["input"]
    fe = frontend.build_host(tmp_path / "fe")
    want = {}
    for level in (3000, 8192):
        _, q = frontend.run_host(fe, sa.hop_windows(pcm, LOW), mode="push", level=f"fixed:{level}", qparams=qp)
        want[level] = [sa.fnv1a(x) for x in q]
    assert len(host) == 7 and [h.fhash for h in host] == want[3000] and want[3000] != want[8192]
    assert [h.fhash for h in sa.run_host(sa.build_stream_host(kws_run, tmp_path / "h0", LOW), pcm, LOW)] == want[8192]
    doc = sa.summary(run, host, pcm, LOW)
    assert (doc["level"], doc["level_trained"]) == (3000, "fixed:3000")
    assert sa.summary(kws_run, host, pcm, LOW)["level_trained"] == "per_clip"
    with pytest.raises(TinyexitError, match="must divide by 3000, not 8192"):
        sa.build_stream_host(run, tmp_path / "bad", sa.StreamSettings(level=8192))
    with pytest.raises(TinyexitError, match="running-peak level peak:0.99:1000.0; the stream firmware"):
        sa.build_stream_host(_with_level(kws_run, tmp_path, "peak:0.99:1000"), tmp_path / "peak", LOW)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cli_streams_with_the_runs_level(kws_run, tmp_path):
    """`tinyexit stream RUN --emulate` on a run trained with fixed:3000: the firmware says it divides by 3000, the
    report records it, and firmware, host build and Python mirror agree on every hop."""
    import json
    run = _with_level(kws_run, tmp_path, "fixed:3000")
    wav = write_wav(tmp_path / "a.wav", synthetic_audio(1.5))
    p = _cli([str(run), "--wav", str(wav), "--emulate", "--json", str(tmp_path / "s.json"), "--timeout", "100"],
             tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert (doc["level"], doc["level_trained"]) == (3000, "fixed:3000")
    assert doc["hops_equal_host"] == doc["hops_equal_python"] == doc["hops"] == 3
    assert "samples divided by 3000" in p.stdout
