"""MFCC front end exactly as MLPerf Tiny KWS computes it, plus the training-time augmentation and a cache.

Per clip: divide by the clip's own maximum, pad/trim to 16000 samples, (training: shift in time and mix in
background noise), clip to [-1, 1], STFT (640-sample Hann frames, step 320, FFT 1024), magnitude,
40 mel bins 20-4000 Hz, log(mel + 1e-6), the first 10 MFCCs -> 49 x 10 (x 1 channel).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.paths import cache_root
from tinyexit.data.speech_commands import SAMPLE_RATE, SILENCE, KwsDataset, read_wav

FRAME_LENGTH, FRAME_STEP, MEL_BINS, NUM_MFCC = 640, 320, 40, 10
FFT_LENGTH = 1024          # what tf.signal.stft picks for fft_length=None: the next power of 2 above 640
LOWER_HZ, UPPER_HZ = 20.0, 4000.0
FEATURE_SHAPE = (49, 10, 1)


def mfcc(wavs: np.ndarray, batch: int = 512) -> np.ndarray:
    """MFCCs of prepared clips: float32 [N, 16000] in [-1, 1] -> float32 [N, 49, 10, 1]."""
    import tensorflow as tf

    wavs = np.asarray(wavs, np.float32)
    if wavs.ndim != 2 or wavs.shape[1] != SAMPLE_RATE:
        raise ValueError(f"mfcc expects [N, {SAMPLE_RATE}] clips, got {wavs.shape}")
    mel = tf.signal.linear_to_mel_weight_matrix(MEL_BINS, FFT_LENGTH // 2 + 1, SAMPLE_RATE,
                                                LOWER_HZ, UPPER_HZ)
    out = []
    for i in range(0, len(wavs), batch):
        stft = tf.signal.stft(wavs[i:i + batch], frame_length=FRAME_LENGTH, frame_step=FRAME_STEP,
                              fft_length=None, window_fn=tf.signal.hann_window)
        spec = tf.abs(stft)
        log_mel = tf.math.log(tf.tensordot(spec, mel, 1) + 1e-6)
        out.append(tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :NUM_MFCC].numpy())
    x = np.concatenate(out) if out else np.zeros((0, 49, NUM_MFCC), np.float32)
    return x[..., None].astype(np.float32)


def normalize_clip(x: np.ndarray) -> np.ndarray:
    """Divide by the clip's own maximum (MLPerf Tiny) and pad or trim to one second."""
    x = np.asarray(x, np.float32)
    peak = float(x.max()) if x.size else 0.0
    if peak > 0:
        x = x / peak
    if len(x) < SAMPLE_RATE:
        x = np.pad(x, (0, SAMPLE_RATE - len(x)))
    return x[:SAMPLE_RATE]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation (MLPerf Tiny's defaults): random shift and background noise."""
    time_shift_ms: float = 100.0
    noise_probability: float = 0.8
    noise_volume: float = 0.1          # noise gain drawn uniformly from [0, noise_volume]
    silence_volume: float = 1.0        # silence clips are noise at a gain drawn from [0, silence_volume]


def prepare_clips(dataset: KwsDataset, split: str, *, copies: int = 1, augment: Augment | None = None,
                  seed: int = 0, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load, normalize and (optionally) augment the clips of a split: -> float32 [N, 16000], labels [N].

    `copies` > 1 makes several differently augmented versions of each training clip. Deterministic for a seed.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    noises = [read_wav(p) for p in dataset.noise_files]
    items = dataset.items[split]
    clips = np.zeros((len(items) * copies, SAMPLE_RATE), np.float32)
    labels = np.zeros(len(items) * copies, np.int64)
    cache: dict[str, np.ndarray] = {}
    k = 0
    for rel, label in tqdm(items, desc=f"loading {split}", unit="clip", disable=not progress, mininterval=1.0):
        if rel and rel not in cache:
            cache[rel] = normalize_clip(read_wav(dataset.root / rel))
        for _ in range(copies):
            if not rel:          # silence: a random stretch of background noise at a random (possibly zero) gain
                noise = noises[rng.integers(len(noises))]
                start = int(rng.integers(0, max(1, len(noise) - SAMPLE_RATE)))
                x = np.pad(noise[start:start + SAMPLE_RATE], (0, max(0, SAMPLE_RATE - len(noise))))
                x = x * float(rng.uniform(0, augment.silence_volume if augment else 1.0))
            else:
                x = cache[rel]
                if augment is not None:
                    x = _augment(x, noises, augment, rng)
            clips[k], labels[k] = np.clip(x, -1.0, 1.0), label
            k += 1
    return clips, labels


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
        noise = noises[rng.integers(len(noises))]
        start = int(rng.integers(0, max(1, len(noise) - SAMPLE_RATE)))
        seg = noise[start:start + SAMPLE_RATE]
        seg = np.pad(seg, (0, SAMPLE_RATE - len(seg)))
        x = x + float(rng.uniform(0, aug.noise_volume)) * seg
    return x


def cache_dir() -> Path:
    return cache_root() / "features"


def split_features(dataset: KwsDataset, split: str, *, copies: int = 1, augment: Augment | None = None,
                   seed: int = 0, use_cache: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray, Path]:
    """MFCC features and labels of a split, cached on disk by a key over the file list, sizes and settings.
    Returns (x [N,49,10,1], y [N], cache file)."""
    key_src = {
        "root": str(Path(dataset.root).resolve()), "split": split, "copies": copies, "seed": seed,
        "augment": asdict(augment) if augment else None,
        "items": [(rel, lab, (dataset.root / rel).stat().st_size if rel else 0) for rel, lab in dataset.items[split]],
        "noises": [(p.name, p.stat().st_size) for p in dataset.noise_files], "version": 1,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{split}-{key}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path) as z:
                return z["x"], z["y"], path
        except (OSError, ValueError, KeyError):
            pass           # a damaged cache entry is recomputed and replaced
    clips, y = prepare_clips(dataset, split, copies=copies, augment=augment, seed=seed, progress=progress)
    x = mfcc(clips)
    if use_cache:
        from tinyexit.io import atomic_path
        with atomic_path(path) as tmp:
            np.savez(tmp, x=x, y=y)
    return x, y, path


__all__ = ["mfcc", "normalize_clip", "Augment", "prepare_clips", "split_features", "FEATURE_SHAPE", "SILENCE"]
