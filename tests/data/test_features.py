"""The MFCC front end is MLPerf Tiny's KWS front end (mlcommons/tiny, benchmark/training/keyword_spotting,
get_dataset.py's evaluation path with kws_util.py's defaults), checked against two implementations written here:
one with tf.signal that follows MLPerf's code step by step, one in numpy/scipy that shares no code with tf.signal.
The signals have a negative peak larger than the positive one, so clipping after the division (which MLPerf does
only after mixing in noise) would show, and include int16, float and short (padded) clips."""
import wave

import numpy as np
import pytest
import scipy.fft

from tinyexit.data.features import Augment, front_end, mfcc, normalize_clip, prepare_clips, split_features
from tinyexit.data.speech_commands import KwsDataset
from tinyexit.errors import TinyexitError


def mlperf_tf_reference(samples):
    """get_dataset.py, get_preprocess_audio_func, is_training=False, feature_type='mfcc', with
    window_size_ms=30, window_stride_ms=20, dct_coefficient_count=10, clip_duration_ms=1000 at 16 kHz."""
    import tensorflow as tf
    desired_samples = 16000
    window_size_samples, window_stride_samples = 480, 320
    spectrogram_length = 1 + (desired_samples - window_size_samples) // window_stride_samples
    wav = tf.cast(samples, tf.float32)
    wav = wav / tf.reduce_max(wav)
    wav = tf.pad(wav, [[0, desired_samples - tf.shape(wav)[-1]]])
    stfts = tf.signal.stft(wav, frame_length=window_size_samples, frame_step=window_stride_samples,
                           fft_length=None, window_fn=tf.signal.hann_window)
    spectrograms = tf.abs(stfts)
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(40, stfts.shape[-1], 16000, 20.0, 4000.0)
    log_mel = tf.math.log(tf.tensordot(spectrograms, mel_matrix, 1) + 1e-6)
    mfccs = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10]
    return tf.reshape(mfccs, [spectrogram_length, 10]).numpy()


def hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def numpy_reference(samples):
    """The same recipe without tf.signal: periodic Hann, rfft 512, HTK-mel triangles, orthonormal DCT-II."""
    x = np.asarray(samples, np.float64)
    x = np.pad(x / x.max(), (0, 16000 - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, 480)[::320]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(480) / 480)
    spec = np.abs(np.fft.rfft(frames * window, n=512))                      # [49, 257]
    freqs_mel = hz_to_mel(np.linspace(0, 8000, 257))[1:]                   # the DC bin gets no weight
    edges = np.linspace(hz_to_mel(20), hz_to_mel(4000), 40 + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs_mel[:, None] - lower) / (center - lower)
    down = (upper - freqs_mel[:, None]) / (upper - center)
    weights = np.vstack([np.zeros((1, 40)), np.maximum(0, np.minimum(up, down))])
    log_mel = np.log(spec @ weights + 1e-6)
    return scipy.fft.dct(log_mel, type=2, axis=-1)[:, :10] / np.sqrt(2 * 40)


def asymmetric_clip(n, seed, scale):
    """Broadband 'speech': noise bursts under an envelope, plus negative clicks three times the positive peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = rng.normal(0, 1, n) * (0.2 + np.sin(np.pi * t / (n / 16000)) ** 2)
    x += 0.5 * np.sin(2 * np.pi * (300 + 900 * t) * t)
    x = x / np.abs(x).max()
    x[rng.choice(n, 5, replace=False)] = -3.0
    return (scale * x / 3.0).astype(np.float64)


CLIPS = {
    "int16": lambda: np.round(asymmetric_clip(16000, 1, 32000)).astype(np.int16),
    "int16-short": lambda: np.round(asymmetric_clip(11000, 2, 20000)).astype(np.int16),
    "float32": lambda: asymmetric_clip(16000, 3, 0.9).astype(np.float32),
    "float64-short": lambda: asymmetric_clip(7000, 4, 0.3),
    "float32-quiet": lambda: asymmetric_clip(16000, 5, 1e-3).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_front_end_is_mlperfs(name):
    clip = CLIPS[name]()
    assert -clip.min() > 2 * clip.max()                  # the negative peak dominates
    got = front_end(clip)
    assert got.shape == (49, 10) and got.dtype == np.float32
    assert np.abs(got - mlperf_tf_reference(clip)).max() <= 1e-3
    assert np.abs(got - numpy_reference(clip)).max() <= 1e-3


def test_the_division_is_by_the_signed_maximum_and_not_clipped():
    clip = CLIPS["float32"]()
    x = normalize_clip(clip)
    assert x.max() == pytest.approx(1.0) and x.min() == pytest.approx(-3.0, rel=1e-5)
    # Clipping to [-1, 1] would change the features by far more than the tolerance above.
    assert np.abs(front_end(clip) - mfcc(np.clip(x, -1, 1)[None])[0, ..., 0]).max() > 0.05
    assert len(normalize_clip(clip[:100])) == 16000 and not normalize_clip(clip[:100])[100:].any()


def test_silence_and_bad_input():
    assert np.isfinite(front_end(np.zeros(16000, np.int16))).all()       # maximum 0: left unscaled
    for bad, word in ((np.zeros((2, 16000), np.float32), "1-D"), (np.zeros(16000, np.int32), "int32"),
                      (np.full(16000, np.nan, np.float32), "NaN")):
        with pytest.raises(TinyexitError, match=word):
            front_end(bad)


def _write_wav(path, samples):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(samples.astype("<i2").tobytes())


def test_evaluation_features_are_the_front_end(tmp_path):
    """A split without augmentation is front_end of each clip; silence is front_end of background noise."""
    clips = [CLIPS["int16"](), CLIPS["int16-short"]()]
    noise = np.round(np.random.default_rng(9).uniform(-8000, 4000, 16000)).astype(np.int16)
    (tmp_path / "yes").mkdir(), (tmp_path / "_background_noise_").mkdir()
    for i, c in enumerate(clips):
        _write_wav(tmp_path / f"yes/{i}.wav", c)
    _write_wav(tmp_path / "_background_noise_/n.wav", noise)    # one second: every silence clip is all of it
    items = [("yes/0.wav", 9), ("yes/1.wav", 9), ("", 10)]
    ds = KwsDataset(root=tmp_path, source="speech_commands", items={"test": items},
                    noise_files=[tmp_path / "_background_noise_/n.wav"])
    x, y, _ = split_features(ds, "test", use_cache=False)
    want = np.stack([front_end(c) for c in clips + [noise]])[..., None]
    assert x.shape == (3, 49, 10, 1) and y.tolist() == [9, 9, 10]
    assert np.abs(x - want).max() <= 1e-3
    # Training clips are clipped to [-1, 1] only after background noise is mixed in, as in MLPerf.
    train, _ = prepare_clips(ds, "test", copies=2, augment=Augment(), seed=1)
    assert np.abs(train).max() <= 1.0 and normalize_clip(clips[0]).min() < -2.5


def test_runs_made_with_the_earlier_front_end_are_refused():
    """Their model.json stored `silence_volume` in the augmentation settings: such a model saw other features."""
    from dataclasses import asdict
    assert Augment.from_dict(asdict(Augment(noise_volume=0.2))) == Augment(noise_volume=0.2)
    with pytest.raises(TinyexitError, match="retrain"):
        Augment.from_dict({**asdict(Augment()), "silence_volume": 1.0})


# ------------------------------------------------------------------ augmentation: SNR and silence (issue #15)

def _augment_dataset(root, silences=2):
    """Two word clips and `silences` silence items over two background noise files (fixed content)."""
    rng = np.random.default_rng(3)
    (root / "yes").mkdir(), (root / "_background_noise_").mkdir()
    t = np.arange(12000) / 16000
    _write_wav(root / "yes/0.wav", np.round(9000 * np.sin(2 * np.pi * 440 * t) * np.hanning(12000)).astype(np.int16))
    _write_wav(root / "yes/1.wav", np.round(rng.normal(0, 3000, 16000)).clip(-32768, 32767).astype(np.int16))
    _write_wav(root / "_background_noise_/a.wav", np.round(rng.uniform(-5000, 5000, 40000)).astype(np.int16))
    _write_wav(root / "_background_noise_/b.wav",
               np.round(rng.normal(0, 2000, 24000)).clip(-32768, 32767).astype(np.int16))
    items = [("yes/0.wav", 9), ("yes/1.wav", 9)] + [("", 10)] * silences
    return KwsDataset(root=root, source="speech_commands", items={"train": items},
                      noise_files=sorted((root / "_background_noise_").glob("*.wav")))


def test_default_augmentation_is_unchanged(tmp_path):
    """Golden hashes of prepare_clips' output computed with the code before the SNR and silence options
    (commit 6cea75f): MLPerf's default augmentation, the evaluation noise of synthetic speech and no augmentation
    give the same clips for a fixed seed; and the settings (model.json, feature cache key) are the same three."""
    import hashlib
    ds = _augment_dataset(tmp_path)
    want = {"default": "df6cf30435a8f0d0", "no shift": "0fccca015171babc", "none": "e99a330fc4b0a97e"}
    for name, aug in (("default", Augment()), ("no shift", Augment(time_shift_ms=0.0)), ("none", None)):
        clips, y = prepare_clips(ds, "train", copies=3, augment=aug, seed=5)
        assert hashlib.sha256(clips.tobytes()).hexdigest()[:16] == want[name], name
        assert y.tolist() == [9] * 6 + [10] * 6
    assert Augment().settings() == {"time_shift_ms": 100.0, "noise_probability": 0.8, "noise_volume": 0.1}
    assert Augment.from_dict({"time_shift_ms": 100, "noise_probability": 0.8, "noise_volume": 0.1}) == Augment()


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0, 35.0])
def test_snr_mixing_hits_the_requested_snr(snr):
    """A constant-amplitude tone burst at samples 4000-12000 (zeros around it) plus noise at `snr`: the SNR
    measured from the construction (burst power over its samples / power of what was added) is within 0.5 dB."""
    from tinyexit.data.features import mix_at_snr
    rng = np.random.default_rng(int(snr) + 40)
    x = np.zeros(16000, np.float32)
    x[4000:12000] = 0.3 * np.sin(2 * np.pi * 500 * np.arange(8000) / 16000 + 0.3)
    noise = rng.normal(0, 1234.0, 16000).astype(np.float32)           # any units: only its shape counts
    y = mix_at_snr(x, noise, snr)
    added = y.astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x[4000:12000].astype(np.float64) ** 2) / np.mean(added ** 2))
    assert abs(measured - snr) <= 0.5, measured
    assert np.corrcoef(added, noise)[0, 1] > 0.999                      # the noise itself, scaled


def test_training_noise_at_an_snr(tmp_path):
    """prepare_clips with snr_db=(s, s), no shift, noise always: the clip minus the clean clip is noise at s dB
    (s = 30: no clipping) against the clean clip's word; with a range, the SNRs spread over it."""
    ds = _augment_dataset(tmp_path, silences=0)
    clean, _ = prepare_clips(ds, "train", copies=4)
    for snr in (30.0, 40.0):
        noisy, _ = prepare_clips(ds, "train", copies=4, seed=2,
                                 augment=Augment(time_shift_ms=0.0, noise_probability=1.0, snr_db=(snr, snr)))
        for c, n in zip(clean, noisy):
            word = np.flatnonzero(np.abs(c) >= 0.05 * np.abs(c).max())
            p_word = np.mean(c[word[0]:word[-1] + 1].astype(np.float64) ** 2)
            measured = 10 * np.log10(p_word / np.mean((n.astype(np.float64) - c) ** 2))
            assert abs(measured - snr) <= 0.5, measured
    spread, _ = prepare_clips(ds, "train", copies=20, seed=2,
                              augment=Augment(time_shift_ms=0.0, noise_probability=1.0, snr_db=(20.0, 40.0)))
    c = clean[0]
    got = [10 * np.log10(np.mean(c.astype(np.float64) ** 2) / np.mean((n - c).astype(np.float64) ** 2))
           for n in spread[:20]]
    assert max(got) - min(got) > 10


def test_silence_examples_include_digital_silence_and_quiet_noise_when_asked(tmp_path):
    ds = _augment_dataset(tmp_path, silences=40)
    plain, y = prepare_clips(ds, "train", augment=Augment(), seed=4)
    assert not any((c == 0).all() for c in plain[y == 10])                  # today: never digital silence
    dig, y = prepare_clips(ds, "train", augment=Augment(silence_digital=0.5), seed=4)
    zeros = [bool((c == 0).all()) for c in dig[y == 10]]
    assert 10 <= sum(zeros) <= 30 and not any((c == 0).all() for c in dig[y == 9])
    allz, y = prepare_clips(ds, "train", augment=Augment(silence_digital=1.0), seed=4)
    assert (allz[y == 10] == 0).all()                                        # no noise mixed into them
    # Peak at -90 dBFS is about 1 LSB of 16-bit PCM: the front end's division leaves only -1, 0 and 1.
    quiet, y = prepare_clips(ds, "train", augment=Augment(silence_quiet=1.0, silence_quiet_dbfs=(-90.0, -90.0)),
                             seed=4)
    for c in quiet[y == 10]:
        assert set(np.unique(c)) <= {-1.0, 0.0, 1.0} and np.abs(c).max() == 1.0
    loud, y = prepare_clips(ds, "train", augment=Augment(silence_quiet=1.0, silence_quiet_dbfs=(-50.0, -50.0)),
                            seed=4)
    assert all(len(np.unique(c)) > 100 for c in loud[y == 10])               # -50 dBFS: ~100 LSB, many levels
    assert Augment(silence_quiet=0.2).settings()["silence_quiet_dbfs"] == [-90.0, -50.0]
    assert "silence_quiet_dbfs" not in Augment(silence_quiet_dbfs=(-80.0, -60.0)).settings()   # unused: off
