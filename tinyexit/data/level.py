"""The front end's level: what the int16 samples are divided by before the MFCC. One definition, read by training
(the recipe's `front_end.level`, model.json's data recipe), the C front end (its host driver's LEVEL argument,
tinyexit.frontend) and the streaming app (tinyexit.stream_app: the firmware's fixed level).

    per_clip            MLPerf: each one-second clip divided by its own signed maximum (data.features.front_end).
                        A stream cannot know that maximum: only for clips.
    fixed:N             every sample divided by N (int16 units, 1..32767): a fixed gain of 1/N, the firmware's
                        TX_FE_LEVEL_FIXED; a word whose peak is at N looks to the model as MLPerf's division makes it.
    peak:DECAY:FLOOR    the C front end's running peak (TX_FE_LEVEL_PEAK): frame f is divided by
                        max(FLOOR, the largest sample seen so far, decayed by DECAY after every frame). In training a
                        clip starts cold (the peak at 0, as when the state is made), where a stream carries it over.

`Level.features(pcm)` computes the features of int16 clips with the level in Python (tf.signal, as
data.features.mfcc), the way the C front end's push mode computes them (tests/frontend compare the two).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tinyexit.errors import TinyexitError

PER_CLIP = "per_clip"
_FIXED = re.compile(r"^fixed:([0-9]+)$")
_PEAK = re.compile(r"^peak:([0-9.eE+-]+):([0-9.eE+-]+)$")
HELP = "per_clip, fixed:N (N in 1..32767, int16 units) or peak:DECAY:FLOOR (DECAY in (0, 1], FLOOR > 0)"


@dataclass(frozen=True)
class Level:
    kind: str = PER_CLIP           # "per_clip", "fixed" or "peak"
    value: int = 0                 # fixed: the divisor N
    decay: float = 0.0             # peak: decay of the running peak per frame (as float32 in C)
    floor: float = 0.0             # peak: the least level

    @classmethod
    def parse(cls, text) -> "Level":
        """A level from its text (a recipe's front_end.level, model.json); a one-line TinyexitError otherwise."""
        s = str(text if text is not None else PER_CLIP).strip()
        if s == PER_CLIP:
            return cls()
        if (m := _FIXED.match(s)) and 1 <= int(m[1]) <= 32767:
            return cls("fixed", value=int(m[1]))
        if (m := _PEAK.match(s)):
            try:
                decay, floor = float(m[1]), float(m[2])
            except ValueError:
                decay = floor = float("nan")
            if 0 < decay <= 1 and 0 < floor < float("inf"):
                return cls("peak", decay=decay, floor=floor)
        raise TinyexitError(f"front-end level {s!r} is not valid; write {HELP}")

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.value}"
        if self.kind == "peak":
            return f"peak:{self.decay!r}:{self.floor!r}"
        return PER_CLIP

    @property
    def streams(self) -> bool:
        """Whether a stream can compute it (everything but MLPerf's per-clip maximum)."""
        return self.kind != PER_CLIP

    def driver_arg(self) -> str:
        """The C front end's host driver LEVEL argument (tinyexit.frontend.run_host): "max" for per_clip."""
        return "max" if self.kind == PER_CLIP else str(self)

    def frame_levels(self, pcm: np.ndarray) -> np.ndarray:
        """float32 [N, 49]: what each frame of int16 clips [N, 16000] is divided by, as the C front end's push mode
        computes it from a fresh state (per_clip: the clip's signed maximum, 1 when it is 0)."""
        from tinyexit.data.features import FRAME_LENGTH, FRAME_STEP, NUM_FRAMES
        pcm = _clips(pcm)
        n = len(pcm)
        if self.kind == "fixed":
            return np.full((n, NUM_FRAMES), np.float32(self.value), np.float32)
        if self.kind == PER_CLIP:
            peak = pcm.max(axis=1).astype(np.float32) if pcm.shape[1] else np.zeros(n, np.float32)
            return np.repeat(np.where(peak != 0, peak, np.float32(1))[:, None], NUM_FRAMES, axis=1)
        # the running signed maximum over the samples up to each frame's end, decayed after every frame (float32)
        decay, floor = np.float32(self.decay), np.float32(self.floor)
        peak = np.zeros(n, np.float32)
        out = np.zeros((n, NUM_FRAMES), np.float32)
        seen = 0
        for f in range(NUM_FRAMES):
            end = FRAME_STEP * f + FRAME_LENGTH
            peak = np.maximum(peak, pcm[:, seen:end].max(axis=1).astype(np.float32))
            seen = end
            out[:, f] = np.maximum(peak, floor)
            peak = (peak * decay).astype(np.float32)
        return out

    def features(self, pcm: np.ndarray) -> np.ndarray:
        """int16 clips [N, 16000] -> float32 [N, 49, 10, 1] with this level (data.features.mfcc after the division;
        a per-frame level divides each frame, which is what tf.signal.stft does to the divided signal)."""
        from tinyexit.data.features import mfcc, mfcc_frames, normalize_clip
        pcm = _clips(pcm)
        if self.kind == PER_CLIP:
            return mfcc(np.stack([normalize_clip(c) for c in pcm]) if len(pcm) else np.zeros((0, pcm.shape[1])))
        if self.kind == "fixed":
            return mfcc(pcm.astype(np.float32) / np.float32(self.value))
        return mfcc_frames(pcm.astype(np.float32), self.frame_levels(pcm))


def _clips(pcm) -> np.ndarray:
    from tinyexit.data.speech_commands import SAMPLE_RATE
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 2 or pcm.shape[1] != SAMPLE_RATE:
        raise TinyexitError(f"front-end level: expected int16 clips [N, {SAMPLE_RATE}], got {pcm.dtype} {pcm.shape}; "
                            f"round to 16-bit PCM and pad or cut each clip to one second")
    return pcm


def to_pcm(x: np.ndarray) -> np.ndarray:
    """float samples in full-scale units ([-1, 1) is int16's range / 32768, as read_wav gives them) -> int16,
    rounded and clipped as an ADC would."""
    return np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def run_level(run) -> Level:
    """The level a run was trained with (model.json's data recipe; runs made before levels existed: per_clip)."""
    from tinyexit.run import as_run
    return Level.parse(as_run(run).model_json()["data"].get("level", PER_CLIP))


__all__ = ["Level", "PER_CLIP", "run_level", "to_pcm"]
