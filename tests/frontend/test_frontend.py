"""The KWS front end in C (tinyexit.frontend) against the Python one (tinyexit.data.features.front_end, computed
with tf.signal): per clip, incremental, with a running-peak level, the int8 quantization against quantize_array,
the Cortex-M4F cross compile, and the firmware's frames on the emulated board against the host build's."""

import numpy as np
import pytest

from tests.conftest import require_program
from tinyexit import frontend
from tinyexit.data.features import mfcc, normalize_clip
from tinyexit.quantize.qparams import QParams, quantize_array

SR = 16000
# the default run's first segment input (runs/kws-default/quant/manifest.json) and a finer one
QPARAMS = [QParams(0.5795232057571411, 85), QParams(0.1, -3)]
FLOAT_TOL = 0.02          # max |C - TF| of a feature; measured 8.5e-3 (a chirp's frames above 4 kHz), ~1e-5 on noise


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    require_program("gcc", "apt-get install -y gcc")
    return frontend.build_host(tmp_path_factory.mktemp("fe"))


def _i16(x) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def synthetic_clips() -> list[np.ndarray]:
    """24 clips: tones, chirps, noise at several levels, bursts, clipped, a negative peak, silence, short and long."""
    rng = np.random.default_rng(15)
    t = np.arange(SR) / SR
    clips = []
    for f, a in [(100, 3000), (440, 8000), (1000, 20000), (2500, 500), (3900, 12000)]:
        clips.append(_i16(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))))
    for f0, f1 in [(50, 4000), (300, 7900)]:
        clips.append(_i16(10000 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / 2) * t)))
    for std in (3, 30, 300, 3000, 12000):
        clips.append(_i16(rng.normal(0, std, SR)))
    pink = np.cumsum(rng.normal(0, 1, SR))
    clips.append(_i16(8000 * (pink - pink.mean()) / np.abs(pink - pink.mean()).max()))
    burst = np.zeros(SR)
    burst[4000:9000] = rng.normal(0, 4000, 5000) * np.hanning(5000)
    clips.append(_i16(burst))
    clips.append(_i16(np.clip(30000 * np.sin(2 * np.pi * 300 * t) * 3, -32768, 32767)))      # clipped
    clips.append(_i16(-np.abs(rng.normal(0, 2000, SR))))                                     # signed max < 0
    clips.append(np.zeros(SR, np.int16))                                                     # digital silence
    clips.append(_i16(rng.normal(0, 1, SR)))                                                 # almost silence
    am = (1 + np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 600 * t) * 6000 + rng.normal(0, 200, SR)
    clips.append(_i16(am))
    clips.append(_i16(np.sign(np.sin(2 * np.pi * 220 * t)) * 5000))                          # square wave
    imp = np.zeros(SR)
    imp[::1600] = 30000
    clips.append(_i16(imp))                                                                  # clicks
    clips.append(_i16(rng.normal(0, 1000, 9000)))                                            # short: padded
    clips.append(_i16(rng.normal(0, 1000, 17000)))                                           # long: cut
    clips.append(_i16(20000 * np.sin(2 * np.pi * 1234 * t[:480])))                          # one frame long
    return clips


def speech_clips(n: int = 4) -> list[np.ndarray]:
    """A few words spoken by espeak-ng (skipped when it is absent)."""
    require_program("espeak-ng", "apt-get install -y --no-install-recommends espeak-ng")
    from tinyexit.data.synth_kws import make_speakers, synthesize
    rng = np.random.default_rng(3)
    speakers = make_speakers(n, rng)
    words = ["yes", "stop", "left", "seven"]
    return [_i16(synthesize(w, s, rng) * 32767 * 0.9) for w, s in zip(words, speakers)]


def python_features(clip: np.ndarray) -> np.ndarray:
    return mfcc(normalize_clip(clip)[None])[0, ..., 0]


def float64_features(clip: np.ndarray) -> np.ndarray:
    """The front end in float64 numpy (np.fft, TensorFlow's window and mel matrix): the exact answer both
    float32 implementations approximate."""
    t = frontend.tables()
    x = normalize_clip(clip).astype(np.float64)
    frames = np.stack([x[320 * f:320 * f + 480] * t["hann"].astype(np.float64) for f in range(49)])
    log_mel = np.log(np.abs(np.fft.rfft(frames, 512)) @ t["mel"].astype(np.float64) + 1e-6)
    k, n = np.arange(10)[:, None], np.arange(40)[None, :]
    return log_mel @ (np.sqrt(2 / 40) * np.cos(np.pi * k * (2 * n + 1) / 80)).T


def c_clip(exe, clip: np.ndarray, **kw):
    return frontend.run_host(exe, clip[None], **kw)


def _compare(exe, clips):
    worst = 0.0
    same = total = 0
    for clip in clips:
        ref = python_features(clip)
        feats, _ = c_clip(exe, clip)
        worst = max(worst, float(np.abs(feats[0] - ref).max()))
        for qp in QPARAMS:
            _, q = c_clip(exe, clip, qparams=qp)
            qr = quantize_array(ref, qp)
            assert np.abs(q[0].astype(int) - qr.astype(int)).max() <= 1
            same += int((q[0] == qr).sum())
            total += qr.size
    return worst, same / total


def test_c_front_end_matches_python_on_synthetic_clips(exe):
    worst, share = _compare(exe, synthetic_clips())
    assert worst < FLOAT_TOL
    assert share >= 0.995


def test_out_of_band_tone_is_as_close_to_exact_as_tensorflow(exe):
    """A pure 7 kHz tone leaves only window leakage in the 20-4000 Hz mel bins: the log-mel is the log of
    float32 rounding noise, in TensorFlow as in C (both ~0.1-0.2 from the float64 answer). The C must stay as
    close to the exact answer as TensorFlow is, and its int8 within 1 LSB of TensorFlow's."""
    t = np.arange(SR) / SR
    clip = _i16(9000 * np.sin(2 * np.pi * 7000 * t + 1.0))
    exact, ref = float64_features(clip), python_features(clip)
    feats, q = c_clip(exe, clip, qparams=QPARAMS[0])
    assert np.abs(feats[0] - exact).max() < 2 * np.abs(ref - exact).max()
    assert np.abs(q[0].astype(int) - quantize_array(ref, QPARAMS[0]).astype(int)).max() <= 1


def test_c_front_end_is_as_accurate_as_tensorflow(exe):
    """Against the float64 answer, the C's error is of TensorFlow's order (8 x 8 x 4 float32 FFT vs DUCC's)."""
    for clip in synthetic_clips()[::2]:
        exact = float64_features(clip)
        c_err = np.abs(c_clip(exe, clip)[0][0] - exact).max()
        tf_err = np.abs(python_features(clip) - exact).max()
        assert c_err < 2 * tf_err + 1e-4


def test_c_front_end_matches_python_on_speech(exe):
    worst, share = _compare(exe, speech_clips())
    assert worst < FLOAT_TOL
    assert share >= 0.995


@pytest.mark.parametrize("chunk", [1, 77, 320, 481, 16000])
def test_incremental_with_the_clips_max_equals_per_clip(exe, chunk):
    clips = [c for c in synthetic_clips() if len(c) <= SR][::3]
    for clip in clips:
        per_clip, _ = c_clip(exe, clip)
        pushed, _ = c_clip(exe, clip, mode="push", level="max", chunk=chunk)
        assert np.array_equal(per_clip, pushed)


def test_power_of_two_level_shortcut_changes_no_bit(exe, tmp_path):
    """A power-of-two level is applied to the mel energies instead of dividing the samples (tx_frontend.c): the
    same bits as the division TensorFlow does, which a build without the shortcut computes."""
    always_divide = frontend.build_host(tmp_path / "div", defines={"TX_FE_ALWAYS_DIVIDE": None})
    clips = [c for c in synthetic_clips() if len(c) == SR]
    pcm = np.stack(clips)
    for level in ("fixed:8192", "fixed:1", "fixed:0.25", "fixed:-512"):
        fast, _ = frontend.run_host(exe, pcm, mode="push", level=level, chunk=320)
        slow, _ = frontend.run_host(always_divide, pcm, mode="push", level=level, chunk=320)
        assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32)), level
    fast, _ = frontend.run_host(exe, pcm, mode="push", level="fixed:3000", chunk=320)
    assert np.array_equal(fast, frontend.run_host(always_divide, pcm, mode="push", level="fixed:3000")[0])


def test_ring_holds_the_last_49_frames_in_time_order(exe):
    """Two seconds pushed with a fixed level: the ring is the second second's features at that level."""
    rng = np.random.default_rng(7)
    t = np.arange(2 * SR) / SR
    x = _i16(6000 * np.sin(2 * np.pi * (200 + 600 * t) * t) + rng.normal(0, 500, 2 * SR))
    level = 7000.0
    feats, _ = c_clip(exe, x, mode="push", level=f"fixed:{level:g}", chunk=333)
    ref = mfcc((x[SR:].astype(np.float32) / np.float32(level))[None])[0, ..., 0]
    assert np.abs(feats[0] - ref).max() < FLOAT_TOL


def test_running_peak_level(exe):
    """Frame f is divided by max(floor, the running signed maximum decayed by `decay` after each frame): an
    oracle computes that level per frame in numpy and the frame with tf.signal on the clip divided by it."""
    rng = np.random.default_rng(11)
    x = np.zeros(SR)
    x[2000:6000] = rng.normal(0, 1500, 4000)
    x[9000:12000] = rng.normal(0, 6000, 3000)
    x = _i16(x)
    decay, floor = np.float32(0.9), np.float32(500.0)
    feats, _ = c_clip(exe, x, mode="push", level=f"peak:{float(decay)!r}:{float(floor)!r}", chunk=100)
    peak, levels, seen = np.float32(0.0), [], 0
    for f in range(49):
        end = 320 * f + 480
        peak = max(peak, np.float32(x[seen:end].max()))
        seen = end
        levels.append(max(peak, floor))
        peak = np.float32(peak * decay)
    batch = np.stack([x.astype(np.float32) / lv for lv in levels])
    ref = mfcc(batch)[np.arange(49), np.arange(49), :, 0]
    assert len(set(levels)) > 10          # the level does move
    assert np.abs(feats[0] - ref).max() < FLOAT_TOL


def test_quantize_is_quantize_array(exe):
    rng = np.random.default_rng(5)
    for qp in [*QPARAMS, QParams(0.25, -128), QParams(0.03125, 127)]:
        s = np.float32(qp.scale)
        ties = (np.arange(-300, 300) + 0.5).astype(np.float32) * s               # exact half-way cases
        x = np.concatenate([ties, rng.normal(0, 40, 4000).astype(np.float32), rng.uniform(-1e6, 1e6, 50),
                            [0.0, -0.0, 1e30, -1e30, s * 0.49999997, -s * 0.5]]).astype(np.float32)
        assert np.array_equal(frontend.quantize_host(exe, x, qp), quantize_array(x, qp))


def test_bad_input_is_one_line_error(exe):
    from tinyexit.errors import TinyexitError
    for bad, kw in [(np.zeros((2, 100), np.float32), {}), (np.zeros(100, np.int16), {}),
                    (np.zeros((1, 100), np.int16), {"mode": "stream"}), (np.zeros((1, 100), np.int16), {"chunk": 0})]:
        with pytest.raises(TinyexitError) as e:
            frontend.run_host(exe, bad, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(TinyexitError, match="LEVEL"):
        frontend.run_host(exe, np.zeros((1, 100), np.int16), mode="push", level="fixed:0")


def test_tables_are_tensorflows():
    """The C layouts rebuild TensorFlow's tables: the mel matrix from the segments (bin k's weights for mel bins
    s(k) - 1 and s(k)), the window, the DCT from its half (row c (anti)symmetric), and the FFT's twiddles."""
    import tensorflow as tf
    t = frontend.tables()
    mel = np.zeros((257, 40), np.float32)
    seg = 0
    for k in range(t["first_bin"], t["last_bin"] + 1):
        while k >= t["mel_end"][seg]:
            seg += 1
        i = k - t["first_bin"]
        if seg > 0:
            mel[k, seg - 1] = t["mel_down"][i]
        if seg < 40:
            mel[k, seg] = t["mel_up"][i]
        assert seg == 40 or t["mel_up"][i] != 0 or t["mel_down"][i] != 0
    assert t["mel_end"][-1] == t["last_bin"] + 1
    assert np.array_equal(mel, tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 4000.0).numpy())
    assert np.array_equal(t["hann_padded"][:480], tf.signal.hann_window(480).numpy())
    assert not t["hann_padded"][480:].any()
    dct = tf.signal.mfccs_from_log_mel_spectrograms(tf.eye(40)).numpy()[:, :10].T      # [coefficient, mel bin]
    half = t["dct_half"].T                                                             # [coefficient, n < 20]
    sign = (-1.0) ** np.arange(10)[:, None]
    assert np.abs(np.concatenate([half, sign * half[:, ::-1]], axis=1) - dct).max() < 1e-6
    for tw, span, js, radix in [(t["twiddle8"], 64, range(1, 8), 8), (t["twiddle4"], 256, range(33), 4)]:
        exact = np.exp(-2j * np.pi * np.outer(list(js), np.arange(1, radix)) / span)
        assert np.abs(tw[:, 0::2] + 1j * tw[:, 1::2] - exact).max() < 1e-7
    assert np.abs(t["split"][:, 0] + 1j * t["split"][:, 1] - np.exp(-2j * np.pi * np.arange(128) / 512)).max() < 1e-7
    for v in [*t["hann"][:50], *t["dct"].ravel()[:50], np.float32(1.0), np.float32(-3e-8)]:
        assert np.float32(float(frontend.c_float(v)[:-1])) == v


def test_cross_compiles_for_cortex_m4f_with_werror(tmp_path):
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi")
    objs = frontend.cross_compile(tmp_path)
    assert all(o.stat().st_size > 0 for o in objs)


@pytest.mark.emulator
def test_firmware_frames_equal_the_host_builds(exe, tmp_path):
    """On the emulated nRF52840 each 320-sample hop computes one frame whose bits the host build reproduces."""
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y qemu-system-arm")
    r = frontend.hop_instructions(tmp_path, "nrf52840", hops=4)
    assert r["hashes"] == frontend.host_hop_hashes(exe, 4)
    assert all(1000 < n < 500_000 for n in r["per_hop"])


@pytest.mark.parametrize("chunk", [77, 320])
def test_int8_ring_is_quantize_array_of_the_float_ring(exe, chunk):
    """tx_frontend_set_quant: each frame quantized once when computed (the int8 ring the stream firmware feeds
    the model) equals quantize_array of the float ring, in time order after the ring wrapped (two seconds pushed
    at a fixed level; a one-frame clip and its zero padding)."""
    rng = np.random.default_rng(21)
    t = np.arange(2 * SR) / SR
    long = _i16(6000 * np.sin(2 * np.pi * (200 + 600 * t) * t) + rng.normal(0, 500, 2 * SR))
    for clip in (long, synthetic_clips()[-1]):
        for qp in QPARAMS:
            feats, q = c_clip(exe, clip, mode="push", level="fixed:7000", chunk=chunk, qparams=qp)
            assert np.array_equal(q[0], quantize_array(feats[0], qp))
