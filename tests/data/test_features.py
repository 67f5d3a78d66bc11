"""MFCC front end: shape, and the values against an independent numpy/scipy implementation of the
MLPerf Tiny recipe (periodic Hann STFT, HTK-mel triangles, log, orthonormal-scaled DCT-II)."""
import numpy as np
import pytest
import scipy.fft

from tinyexit.data.features import mfcc, normalize_clip


def hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def reference_mfcc(clip):
    frames = np.lib.stride_tricks.sliding_window_view(clip.astype(np.float64), 640)[::320]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(640) / 640)          # periodic Hann
    spec = np.abs(np.fft.rfft(frames * window, n=1024))                     # [49, 513]
    # Triangular filters with edges equally spaced in mel between 20 and 4000 Hz; the DC bin gets no weight.
    freqs_mel = hz_to_mel(np.linspace(0, 8000, 513))[1:]
    edges = np.linspace(hz_to_mel(20), hz_to_mel(4000), 40 + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs_mel[:, None] - lower) / (center - lower)
    down = (upper - freqs_mel[:, None]) / (upper - center)
    weights = np.vstack([np.zeros((1, 40)), np.maximum(0, np.minimum(up, down))])
    log_mel = np.log(spec @ weights + 1e-6)
    return scipy.fft.dct(log_mel, type=2, axis=-1)[:, :10] / np.sqrt(2 * 40)


def test_shape():
    x = mfcc(np.zeros((3, 16000), np.float32))
    assert x.shape == (3, 49, 10, 1) and x.dtype == np.float32


# Broadband noise agrees to ~1e-5 (float32 vs float64); a pure tone leaves mel bands nearly empty, where
# log(x + 1e-6) magnifies float32 round-off to ~0.02. A one-sample shift of the input already moves the
# noise case by ~0.01, so the tolerances still catch framing, window and filter mistakes.
@pytest.mark.parametrize("kind, atol", [("tone", 0.05), ("chirp", 0.05), ("noise", 1e-3)])
def test_matches_independent_implementation(kind, atol):
    t = np.arange(16000) / 16000
    rng = np.random.default_rng(1)
    clip = {"tone": np.sin(2 * np.pi * 1000 * t),
            "chirp": np.sin(2 * np.pi * (200 + 1500 * t) * t),
            "noise": rng.uniform(-1, 1, 16000)}[kind].astype(np.float32)
    got = mfcc(clip[None])[0, ..., 0]
    want = reference_mfcc(clip)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


def test_tone_energy_lands_in_its_mel_band():
    """The first coefficient (overall log energy) rises with a loud tone over silence-level noise."""
    t = np.arange(16000) / 16000
    quiet = mfcc((1e-4 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None])[0, :, 0, 0]
    loud = mfcc((0.9 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None])[0, :, 0, 0]
    assert np.all(loud > quiet + 10)


def test_normalize_divides_by_max_and_pads():
    x = normalize_clip(np.array([0.1, -0.5, 0.25], np.float32))
    assert len(x) == 16000 and x[2] == 1.0 and x[1] == -2.0 and not x[3:].any()
