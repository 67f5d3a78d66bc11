"""MLPerf Tiny's KWS front end (`front_end`), plus the training-time augmentation and a cache.

The front end is mlcommons/tiny benchmark/training/keyword_spotting (get_dataset.py, the evaluation path, with
kws_util.py's defaults): the clip divided by its own signed maximum (`x / reduce_max(x)`, not clipped) and
zero-padded to 16000 samples; STFT with 480-sample (30 ms) Hann frames, step 320 (20 ms), FFT 512; magnitude;
40 mel bins 20-4000 Hz; log(mel + 1e-6); the first 10 MFCCs -> 49 x 10.
Training (and the noisy evaluation of synthetic speech) inserts MLPerf's augmentation between the division and
the STFT: a time shift and background noise, after which the clip is clipped to [-1, 1] (as MLPerf clips only
after mixing noise). Optional recipe settings (`Augment`, docs/MODELS.md): noise at an SNR range instead of a gain
(`mix_at_snr`), and `_silence_` examples that are digital silence or very quiet noise (`quiet_noise`).
A streaming front-end level (tinyexit.data.level: a fixed level or a running peak instead of the division by the
clip's maximum) makes the clips as int16 PCM at recording levels instead (`prepare_pcm`, `Augment.gain_dbfs`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.paths import cache_root
from tinyexit.data.speech_commands import SAMPLE_RATE, SILENCE, KwsDataset, read_wav

FRAME_LENGTH, FRAME_STEP, MEL_BINS, NUM_MFCC = 480, 320, 40, 10     # 30 ms frames, 20 ms step at 16 kHz
FFT_LENGTH = 512           # what tf.signal.stft picks for fft_length=None: the next power of 2 above 480
LOWER_HZ, UPPER_HZ = 20.0, 4000.0
NUM_FRAMES = 1 + (SAMPLE_RATE - FRAME_LENGTH) // FRAME_STEP           # 49
FEATURE_SHAPE = (NUM_FRAMES, NUM_MFCC, 1)
FRONT_END_VERSION = 2      # part of the feature cache key: bump whenever the features of a clip change


def front_end(samples) -> np.ndarray:
    """MLPerf Tiny's KWS front end for one clip: int16 or float samples at 16 kHz -> float32 [49, 10].

    Divides by the clip's signed maximum (not clipped), zero-pads to one second (a longer clip is cut to its
    first second, which MLPerf's code would refuse), then `mfcc`. A clip whose maximum is 0 (e.g. digital
    silence) is left unscaled, where MLPerf's division would give NaN."""
    return mfcc(normalize_clip(samples)[None])[0, ..., 0]


def mfcc(wavs: np.ndarray, batch: int = 512) -> np.ndarray:
    """The front end after the division and padding: float32 [N, 16000] -> float32 [N, 49, 10, 1]."""
    import tensorflow as tf

    wavs = np.asarray(wavs, np.float32)
    if wavs.ndim != 2 or wavs.shape[1] != SAMPLE_RATE:
        raise ValueError(f"mfcc expects [N, {SAMPLE_RATE}] clips, got {wavs.shape}")
    out = []
    for i in range(0, len(wavs), batch):
        stft = tf.signal.stft(wavs[i:i + batch], frame_length=FRAME_LENGTH, frame_step=FRAME_STEP,
                              fft_length=FFT_LENGTH, window_fn=tf.signal.hann_window)
        out.append(_mfcc_of_stft(stft))
    x = np.concatenate(out) if out else np.zeros((0, NUM_FRAMES, NUM_MFCC), np.float32)
    return x[..., None].astype(np.float32)


def mfcc_frames(wavs: np.ndarray, levels: np.ndarray, batch: int = 512) -> np.ndarray:
    """`mfcc` of undivided clips float32 [N, 16000] whose frame f is divided by levels [N, 49] (a level that moves,
    tinyexit.data.level): tf.signal.stft's own steps (frame, times the window, rfft) with the division per frame."""
    import tensorflow as tf

    wavs, levels = np.asarray(wavs, np.float32), np.asarray(levels, np.float32)
    if wavs.ndim != 2 or wavs.shape[1] != SAMPLE_RATE or levels.shape != (len(wavs), NUM_FRAMES):
        raise ValueError(f"mfcc_frames expects [N, {SAMPLE_RATE}] clips and [N, {NUM_FRAMES}] levels, got "
                         f"{wavs.shape} and {levels.shape}")
    window = tf.signal.hann_window(FRAME_LENGTH)
    out = []
    for i in range(0, len(wavs), batch):
        frames = tf.signal.frame(wavs[i:i + batch], FRAME_LENGTH, FRAME_STEP) / levels[i:i + batch, :, None]
        out.append(_mfcc_of_stft(tf.signal.rfft(frames * window, [FFT_LENGTH])))
    x = np.concatenate(out) if out else np.zeros((0, NUM_FRAMES, NUM_MFCC), np.float32)
    return x[..., None].astype(np.float32)


def _mfcc_of_stft(stft) -> np.ndarray:
    """The front end after the STFT: magnitude -> 40 mel bins -> log(mel + 1e-6) -> the first 10 MFCCs."""
    import tensorflow as tf

    mel = tf.signal.linear_to_mel_weight_matrix(MEL_BINS, FFT_LENGTH // 2 + 1, SAMPLE_RATE, LOWER_HZ, UPPER_HZ)
    log_mel = tf.math.log(tf.tensordot(tf.abs(stft), mel, 1) + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :NUM_MFCC].numpy()


def normalize_clip(samples) -> np.ndarray:
    """MLPerf's first step: divide by the clip's signed maximum (not clipped; left as is when that maximum is
    0), then zero-pad (or cut) to one second. int16 or float samples -> float32 [16000]."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise TinyexitError(f"front end: expected the samples of one mono clip (a 1-D array), got shape {x.shape}; "
                            f"pass one clip at a time (mix stereo down to mono first)")
    if x.dtype != np.int16 and not np.issubdtype(x.dtype, np.floating):
        raise TinyexitError(f"front end: samples of type {x.dtype}; pass int16 PCM or float samples")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise TinyexitError("front end: the clip holds NaN or infinite samples; pass finite samples")
    peak = float(x.max()) if x.size else 0.0
    if peak != 0.0:
        x = x / np.float32(peak)
    if len(x) < SAMPLE_RATE:
        x = np.pad(x, (0, SAMPLE_RATE - len(x)))
    return x[:SAMPLE_RATE]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: MLPerf Tiny's defaults (random shift, background noise at a gain), and
    optionally noise at an SNR and `_silence_` examples that are digital silence or very quiet noise.

    The optional settings are off by default and left out of `settings()` (model.json, the feature cache key)
    while off, so a recipe that does not use them makes the same features under the same key as before."""
    time_shift_ms: float = 100.0
    noise_probability: float = 0.8
    noise_volume: float = 0.1          # noise gain drawn uniformly from [0, noise_volume] (without snr_db)
    snr_db: tuple[float, float] | None = None        # instead: noise at an SNR drawn uniformly from [low, high] dB
    silence_digital: float = 0.0       # share of `_silence_` examples that are digital silence (all zeros)
    silence_quiet: float = 0.0         # share of `_silence_` examples that are noise at a very low level ...
    silence_quiet_dbfs: tuple[float, float] = (-90.0, -50.0)   # ... its peak uniform in these dBFS, 16-bit PCM
    gain_dbfs: tuple[float, float] | None = None     # streaming levels: each clip's peak uniform in these dBFS

    def __post_init__(self):         # numbers as floats, pairs as tuples (a YAML 100 is 100.0 in the cache key)
        for name, v in asdict(self).items():
            if v is not None:
                object.__setattr__(self, name, tuple(float(e) for e in v) if isinstance(v, (list, tuple))
                                   else float(v))

    def settings(self) -> dict:
        """The settings as stored in model.json and hashed into the feature cache key: the optional ones only
        when they are on (so the defaults keep today's key), pairs as lists."""
        d = asdict(self)
        on = {name: d[name] != off for name, off in OPTIONAL_SETTINGS.items()}
        on["silence_quiet_dbfs"] = on["silence_quiet"]          # the level is stated whenever quiet noise is on
        for name in OPTIONAL_SETTINGS:
            if not on[name]:
                del d[name]
            elif isinstance(d[name], tuple):
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Augment":
        """The settings stored in a run's model.json; a run made before the MLPerf front end (it stored a
        `silence_volume`) is refused, since its model was trained on other features."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise TinyexitError(f"model.json's augmentation has unknown settings {unknown}: the run was made by an "
                                f"earlier tinyexit whose features differ; retrain it with `tinyexit train`")
        return cls(**d)


OPTIONAL_SETTINGS = {"snr_db": None, "silence_digital": 0.0, "silence_quiet": 0.0,
                     "silence_quiet_dbfs": (-90.0, -50.0), "gain_dbfs": None}


def prepare_clips(dataset: KwsDataset, split: str, *, copies: int = 1, augment: Augment | None = None,
                  seed: int = 0, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The clips of a split after the front end's division and padding (`normalize_clip`) and, with `augment`,
    MLPerf's training path (shift, background noise, then clipping to [-1, 1]): -> float32 [N, 16000], labels [N].

    `_silence_` items are one-second stretches of a random background noise file, treated like every other clip;
    with `augment.silence_digital` / `silence_quiet`, that share of them is digital silence / quiet noise instead,
    with no shift or noise added.
    `copies` > 1 makes several differently augmented versions of each clip. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    noises = [read_wav(p) for p in dataset.noise_files]
    n = len(dataset.items[split]) * copies
    clips = np.zeros((n, SAMPLE_RATE), np.float32)
    labels = np.zeros(n, np.int64)
    for k, x, label in _examples(dataset, split, copies, progress, normalize_clip):
        quiet = None
        if x is None:
            quiet = _quiet_silence(noises, augment, rng) if augment is not None else None
            x = normalize_clip(_noise_stretch(noises, rng)) if quiet is None else normalize_clip(quiet)
        if augment is not None and noises and quiet is None:
            x = np.clip(_augment(x, noises, augment, rng), -1.0, 1.0)
        clips[k], labels[k] = x, label
    return clips, labels


def _examples(dataset: KwsDataset, split: str, copies: int, progress: bool, load):
    """(index, clip, label) for each of the `copies` of every item of a split, in order; each clip file is read
    once and passed through `load`; `_silence_` items give None as their clip (the caller draws noise)."""
    from tqdm.auto import tqdm

    cache: dict[str, np.ndarray] = {}
    k = 0
    for rel, label in tqdm(dataset.items[split], desc=f"loading {split}", unit="clip", disable=not progress,
                           mininterval=1.0):
        if rel and rel not in cache:
            cache[rel] = load(read_wav(dataset.root / rel))
        for _ in range(copies):
            yield k, cache[rel] if rel else None, label
            k += 1


def _first_second(x: np.ndarray) -> np.ndarray:
    """A clip cut or zero-padded to one second."""
    x = x[:SAMPLE_RATE]
    return np.pad(x, (0, SAMPLE_RATE - len(x)))


def prepare_pcm(dataset: KwsDataset, split: str, *, copies: int = 1, augment: Augment | None = None,
                seed: int = 0, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The clips of a split as a microphone would record them, for a streaming front-end level (no per-clip
    division): -> int16 [N, 16000] PCM, labels [N]. Each clip (or `_silence_` noise stretch) is scaled to peak 1,
    gets MLPerf's shift and the noise (relative to that peak, or at an SNR) with `augment`, then is scaled so the
    clean clip's peak sits at a level drawn uniformly in `augment.gain_dbfs` (without it: the clip's recorded
    peak), rounded and clipped to 16-bit PCM. `_silence_` items that `augment` makes digital silence or quiet
    noise are that PCM as is. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    noises = [read_wav(p) for p in dataset.noise_files]
    n = len(dataset.items[split]) * copies
    pcm = np.zeros((n, SAMPLE_RATE), np.int16)
    labels = np.zeros(n, np.int64)
    for k, x, label in _examples(dataset, split, copies, progress, _first_second):
        quiet = None
        if x is None and augment is not None:
            quiet = _quiet_silence(noises, augment, rng)
        if quiet is not None:
            pcm[k] = quiet
        else:
            pcm[k] = _record(x if x is not None else _noise_stretch(noises, rng), noises, augment, rng)
        labels[k] = label
    return pcm, labels


def _record(x: np.ndarray, noises: list[np.ndarray], aug: Augment | None, rng: np.random.Generator) -> np.ndarray:
    """One clip (float, full-scale units) at peak 1, augmented, then at its recording level as int16 PCM."""
    from tinyexit.data.level import to_pcm
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        return np.zeros(SAMPLE_RATE, np.int16)
    target = peak if aug is None or aug.gain_dbfs is None else 10 ** (float(rng.uniform(*aug.gain_dbfs)) / 20)
    y = np.asarray(x, np.float32) / np.float32(peak)
    if aug is not None and noises:
        y = _augment(y, noises, aug, rng)
    return to_pcm(np.asarray(y, np.float64) * target)


def _augment(x: np.ndarray, noises: list[np.ndarray], aug: Augment, rng: np.random.Generator) -> np.ndarray:
    shift = int(aug.time_shift_ms * SAMPLE_RATE / 1000)
    if shift:
        s = int(rng.integers(-shift, shift + 1))
        x = np.roll(x, s)
        if s > 0:
            x[:s] = 0
        elif s < 0:
            x[s:] = 0
    if noises and rng.uniform() < aug.noise_probability:
        seg = _noise_stretch(noises, rng)
        if aug.snr_db is None:
            x = x + float(rng.uniform(0, aug.noise_volume)) * seg
        else:
            x = mix_at_snr(x, seg, float(rng.uniform(*aug.snr_db)))
    return x


def _quiet_silence(noises: list[np.ndarray], aug: Augment, rng: np.random.Generator) -> np.ndarray | None:
    """A `_silence_` example that is digital silence or very quiet noise, as 16-bit PCM (int16 [16000]), drawn
    with the shares `aug` asks for; None for an ordinary one. Draws nothing from `rng` when both shares are 0
    (today's recipes keep their random stream)."""
    if aug.silence_digital <= 0 and aug.silence_quiet <= 0:
        return None
    u = float(rng.uniform())
    if u < aug.silence_digital or (u < aug.silence_digital + aug.silence_quiet and not noises):
        return np.zeros(SAMPLE_RATE, np.int16)
    if u >= aug.silence_digital + aug.silence_quiet:
        return None
    return quiet_pcm(_noise_stretch(noises, rng), float(rng.uniform(*aug.silence_quiet_dbfs)))


def quiet_pcm(seg: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """`seg` scaled so its peak sits at `peak_dbfs`, rounded to 16-bit PCM (int16): what a quiet window of a real
    recording holds (below about -96 dBFS, zeros)."""
    peak = float(np.abs(seg).max()) if len(seg) else 0.0
    if peak == 0.0:
        return np.zeros(len(seg), np.int16)
    return np.round(np.asarray(seg, np.float64) / peak * 10 ** (peak_dbfs / 20) * 32767).astype(np.int16)


def quiet_noise(seg: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """`quiet_pcm` through MLPerf's division and padding (`normalize_clip`): float32 [16000]."""
    return normalize_clip(quiet_pcm(seg, peak_dbfs)) if len(seg) else np.zeros(SAMPLE_RATE, np.float32)


def speech_extent(x: np.ndarray, rel: float = 0.05) -> slice:
    """From the first to the last sample whose magnitude reaches `rel` of the clip's peak (the word)."""
    a = np.abs(x)
    idx = np.flatnonzero(a >= rel * a.max()) if a.size and a.max() > 0 else np.zeros(0, int)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` + `noise` scaled so that 10 log10(mean power of x over its `speech_extent` / mean power of the
    scaled noise over the whole clip) = `snr_db`. A silent `x` or noise is returned unchanged (no SNR exists)."""
    ext = speech_extent(x)
    p_speech = float(np.mean(np.asarray(x[ext], np.float64) ** 2)) if ext.stop > ext.start else 0.0
    p_noise = float(np.mean(np.asarray(noise, np.float64) ** 2))
    if p_speech == 0.0 or p_noise == 0.0:
        return x
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (x + scale * np.asarray(noise, np.float64)).astype(np.float32)


def _noise_stretch(noises: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One second from a random place in a random background noise file (zero-padded if the file is shorter)."""
    noise = noises[rng.integers(len(noises))]
    start = int(rng.integers(0, max(1, len(noise) - SAMPLE_RATE)))
    seg = noise[start:start + SAMPLE_RATE]
    return np.pad(seg, (0, SAMPLE_RATE - len(seg)))


def cache_dir() -> Path:
    return cache_root() / "features"


def split_features(dataset: KwsDataset, split: str, *, copies: int = 1, augment: Augment | None = None,
                   seed: int = 0, use_cache: bool = True, progress: bool = False,
                   level=None) -> tuple[np.ndarray, np.ndarray, Path]:
    """MFCC features and labels of a split, cached on disk by a key over the file list, sizes and settings.
    `level` (a tinyexit.data.level.Level; None: per_clip, MLPerf's division): a streaming level makes the clips
    as int16 PCM (`prepare_pcm`) and divides by that level. Returns (x [N,49,10,1], y [N], cache file)."""
    key_src = {
        "root": str(Path(dataset.root).resolve()), "split": split, "copies": copies, "seed": seed,
        "augment": augment.settings() if augment else None,
        "items": [(rel, lab, (dataset.root / rel).stat().st_size if rel else 0) for rel, lab in dataset.items[split]],
        "noises": [(p.name, p.stat().st_size) for p in dataset.noise_files], "version": FRONT_END_VERSION,
    }
    if level is not None and level.streams:          # per_clip keeps the key it always had
        key_src["level"] = str(level)
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{split}-{key}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path) as z:
                return z["x"], z["y"], path
        except (OSError, ValueError, KeyError):
            pass           # a damaged cache entry is recomputed and replaced
    if level is not None and level.streams:
        pcm, y = prepare_pcm(dataset, split, copies=copies, augment=augment, seed=seed, progress=progress)
        x = level.features(pcm)
    else:
        clips, y = prepare_clips(dataset, split, copies=copies, augment=augment, seed=seed, progress=progress)
        x = mfcc(clips)
    if use_cache:
        from tinyexit.io import atomic_path
        with atomic_path(path) as tmp:
            np.savez(tmp, x=x, y=y)
    return x, y, path


__all__ = ["front_end", "mfcc", "mfcc_frames", "normalize_clip", "Augment", "prepare_clips", "prepare_pcm", "mix_at_snr",
           "quiet_noise", "quiet_pcm", "split_features", "FEATURE_SHAPE", "SILENCE"]
