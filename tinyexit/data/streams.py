"""Long keyword-spotting recordings with ground truth (`tinyexit data kws-stream`), for streaming evaluation the way
MLPerf Tiny's streaming wake-word benchmark scores a detector (mlcommons/tiny benchmark/training/streaming_wakeword:
a long WAV plus the time windows of every wake word; see tinyexit.data.stream_score for the matching rule).

One word sequence is laid out per call, from the HELD-OUT voices only (the clips of `testing_list.txt`): keywords,
unknown words (every other word folder) and stretches of silence, never overlapping, with gaps of varied length.
That clean speech track is written once as `clean.wav` and once per SNR over background noise (`snr20.wav`, ...).
Beside every WAV a CSV (`clean.csv`, `snr20.csv`, ...) lists each word: onset and offset in seconds, the label
(the keyword, or `_unknown_`), the word and the clip it came from. `streams.json` records the settings.

- Word extent: a clip's 10-ms frames whose RMS exceeds 5 % of its loudest frame, widened by 20 ms on each side;
  onset/offset are that extent's first and last sample in the recording.
- Loudness: each word's peak is set to a level drawn uniformly in dB from LEVEL_DBFS (-20 to -6 dBFS).
- Gaps: 1.0 to 2.5 s of silence after each word (so one 1-s model window never holds two words), and with
  probability 0.1 an extra silence of 2 to 6 s.
- Noise: a track of 4-12 s pieces of the data set's `_background_noise_/` files (50-ms crossfades), scaled so
  that SNR = 10 log10(mean speech power over the words' extents / mean noise power over the whole recording).
  A mix whose peak would exceed 0.99 is scaled down as a whole (speech and noise alike: the SNR is unchanged);
  that factor is the recording's `gain` in streams.json (the clean recording has gain 1).

Synthetic speech (the default data) proves the pipeline, not accuracy on real speech: reports say so.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit.data.speech_commands import (CLASSES, KEYWORDS, SAMPLE_RATE, UNKNOWN, _read_list,
                                          load_speech_commands, read_wav, wav_bytes)
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_dir

UNKNOWN_LABEL = CLASSES[UNKNOWN]
DEFAULT_SNRS = (20.0, 10.0, 5.0, 0.0)
DEFAULT_MINUTES = 3.0
LEVEL_DBFS = (-20.0, -6.0)
GAP_S = (1.0, 2.5)
LONG_SILENCE_S, LONG_SILENCE_P = (2.0, 6.0), 0.1
KEYWORD_P = 0.65                  # else an unknown word
NOISE_PIECE_S, CROSSFADE_S = (4.0, 12.0), 0.05
CSV_HEADER = ("onset_s", "offset_s", "label", "word", "source")
MANIFEST = "streams.json"
SPLIT_LISTS = {"test": "testing_list.txt", "validation": "validation_list.txt"}   # (validation: calibration)


@dataclass(frozen=True)
class Word:
    onset: int                    # first sample in the recording
    offset: int                   # one past the last sample
    label: str                    # keyword or "_unknown_"
    word: str
    source: str                   # clip path relative to the data folder


def recording_name(snr: float | None) -> str:
    """"clean" or "snr<value>" (e.g. snr20, snr-5, snr7.5)."""
    return "clean" if snr is None else f"snr{snr:g}"


def word_extent(x: np.ndarray, frame: int = 160, rel: float = 0.05, margin: int = 320) -> tuple[int, int]:
    """(start, end) of the word in a clip: 10-ms frames with RMS above `rel` x the loudest frame's, +-20 ms."""
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    active = np.flatnonzero(rms > rel * rms.max()) if rms.max() > 0 else np.arange(0)
    if active.size == 0:
        return 0, 0
    return max(0, active[0] * frame - margin), min(len(x), (active[-1] + 1) * frame + margin)


def _test_clips(root: Path, split: str = "test") -> tuple[dict[str, list[str]], list[str], list[Path]]:
    """Keyword clips by word, unknown clips and noise files of the split's list (test: testing_list.txt,
    validation: validation_list.txt, for calibrating on streams); the layout is checked first."""
    listed = SPLIT_LISTS.get(split)
    if listed is None:
        raise TinyexitError(f"stream split {split!r}: use one of {', '.join(SPLIT_LISTS)}")
    ds = load_speech_commands(root)
    kw: dict[str, list[str]] = {k: [] for k in KEYWORDS}
    unk: list[str] = []
    for rel in _read_list(root, listed):
        word = rel.split("/", 1)[0]
        (kw[word] if word in kw else unk).append(rel)
    empty = [k for k, v in kw.items() if not v]
    if empty:
        raise TinyexitError(f"{root}/{listed} has no clips of {', '.join(empty)}; every keyword needs "
                            f"held-out clips (re-make the data set with more speakers)")
    if not unk:
        raise TinyexitError(f"{root}/{listed} has no clips of words other than the keywords; add some")
    return kw, unk, ds.noise_files


def lay_out(root: Path, seconds: float, rng: np.random.Generator,
            split: str = "test") -> tuple[np.ndarray, list[Word]]:
    """The clean speech track of `seconds` and its words, from the split's clips of the data folder `root`."""
    kw, unk, _ = _test_clips(root, split)
    total = int(round(seconds * SAMPLE_RATE))
    track = np.zeros(total, np.float32)
    words: list[Word] = []
    clips: dict[str, np.ndarray] = {}
    t = int(rng.uniform(0.5, 1.5) * SAMPLE_RATE)
    while True:
        if rng.uniform() < LONG_SILENCE_P:
            t += int(rng.uniform(*LONG_SILENCE_S) * SAMPLE_RATE)
        if rng.uniform() < KEYWORD_P:
            label = KEYWORDS[rng.integers(len(KEYWORDS))]
            rel = kw[label][rng.integers(len(kw[label]))]
        else:
            label, rel = UNKNOWN_LABEL, unk[rng.integers(len(unk))]
        if rel not in clips:
            x = read_wav(root / rel)
            a, b = word_extent(x)
            clips[rel] = x[a:b]
        w = clips[rel]
        peak = float(np.abs(w).max()) if w.size else 0.0
        if t + len(w) + int(0.5 * SAMPLE_RATE) > total:
            break
        if peak == 0.0:        # a silent clip: nothing to place (time moves on, so this ends)
            t += SAMPLE_RATE
            continue
        level = 10 ** (rng.uniform(*LEVEL_DBFS) / 20)
        track[t:t + len(w)] = w * np.float32(level / peak)
        words.append(Word(t, t + len(w), label, rel.split("/", 1)[0], rel))
        t += len(w) + int(rng.uniform(*GAP_S) * SAMPLE_RATE)
    if not any(w.label != UNKNOWN_LABEL for w in words):
        raise TinyexitError(f"{seconds:g} s is too short for a recording with a keyword; ask for more --minutes")
    return track, words


def noise_track(noise_files: list[Path], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of background noise: pieces of random files at random places, crossfaded, zero mean."""
    noises = [read_wav(p) for p in noise_files]
    noises = [x for x in noises if x.size and np.any(x)]
    if not noises:
        raise TinyexitError("the background noise files are all silent; put real noise in _background_noise_/")
    fade = int(CROSSFADE_S * SAMPLE_RATE)
    out = np.zeros(n + fade, np.float64)
    pos = 0
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    while pos < n:
        m = min(int(rng.uniform(*NOISE_PIECE_S) * SAMPLE_RATE), n + fade - pos)
        src = noises[rng.integers(len(noises))]
        start = int(rng.integers(len(src)))
        piece = np.resize(np.roll(src, -start), m).astype(np.float64)     # wraps around a short file
        piece -= piece.mean()
        if pos and m > fade:
            piece[:fade] *= ramp
            out[pos:pos + fade] *= 1.0 - ramp
        out[pos:pos + m] += piece
        pos += m - fade if m > fade else m
    return out[:n]


def speech_power(track: np.ndarray, words: list[Word]) -> float:
    """Mean power of the speech over the words' extents (the SNR's numerator)."""
    if not words:
        return 0.0
    idx = np.concatenate([np.arange(w.onset, w.offset) for w in words])
    return float(np.mean(track[idx].astype(np.float64) ** 2))


def mix(track: np.ndarray, words: list[Word], noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float, float]:
    """(mixed recording, noise scale, gain): noise scaled to `snr_db` against the speech, then the whole mix
    scaled by `gain` <= 1 so that its peak stays <= 0.99."""
    p_noise = float(np.mean(noise ** 2))
    if p_noise == 0.0:
        raise TinyexitError("the background noise track is silent; put real noise in _background_noise_/")
    scale = np.sqrt(speech_power(track, words) / (p_noise * 10 ** (snr_db / 10)))
    x = track.astype(np.float64) + scale * noise
    peak = float(np.abs(x).max())
    gain = min(1.0, 0.99 / peak) if peak > 0 else 1.0
    return (x * gain).astype(np.float32), float(scale), gain


def csv_text(words: list[Word]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_HEADER)
    for w in words:
        wr.writerow((f"{w.onset / SAMPLE_RATE:.6f}", f"{w.offset / SAMPLE_RATE:.6f}", w.label, w.word, w.source))
    return buf.getvalue()


def parse_snrs(text: str) -> tuple[float, ...]:
    """"20,10,5,0" -> (20.0, 10.0, 5.0, 0.0); anything else is a one-line TinyexitError."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        snrs = tuple(float(p) for p in parts)
    except ValueError:
        raise TinyexitError(f"--snr {text!r}: not a comma-separated list of numbers (dB); e.g. --snr 20,10,5,0") \
            from None
    if not snrs or not all(np.isfinite(snrs)):
        raise TinyexitError(f"--snr {text!r}: give at least one finite SNR in dB, e.g. --snr 20,10,5,0")
    if len(set(snrs)) != len(snrs):
        raise TinyexitError(f"--snr {text!r} repeats a value; give each SNR once")
    return snrs


def make_streams(out: str | os.PathLike, data: str | os.PathLike, *, minutes: float = DEFAULT_MINUTES,
                 snrs=DEFAULT_SNRS, seed: int = 0, split: str = "test") -> dict:
    """Write the clean recording and one per SNR (WAV + CSV each) and streams.json into `out`, atomically.
    Returns the manifest."""
    data = Path(data)
    if not data.is_dir():
        raise TinyexitError(f"data folder {data} does not exist; pass a Speech Commands v2 folder with --data or "
                            f"make one with `tinyexit data kws --out {data}`")
    if not (isinstance(minutes, (int, float)) and np.isfinite(minutes) and minutes > 0):
        raise TinyexitError(f"--minutes must be a positive number, got {minutes}")
    snrs = tuple(float(s) for s in snrs)
    rng = np.random.default_rng(seed)
    track, words = lay_out(data, 60.0 * minutes, rng, split)
    _, _, noise_files = _test_clips(data, split)
    noise = noise_track(noise_files, len(track), rng)
    source = "speech_commands"
    meta_file = data / "tinyexit_dataset.json"
    if meta_file.is_file():
        try:
            source = json.loads(meta_file.read_text()).get("source", source)
        except (json.JSONDecodeError, AttributeError):
            pass
    recs = [{"name": "clean", "snr_db": None, "noise_scale": 0.0, "gain": 1.0}]
    with atomic_dir(out, holds=(MANIFEST,)) as tmp:
        (tmp / "clean.wav").write_bytes(wav_bytes(track))
        table = csv_text(words)
        (tmp / "clean.csv").write_text(table)
        for snr in snrs:
            name = recording_name(snr)
            x, scale, gain = mix(track, words, noise, snr)
            (tmp / f"{name}.wav").write_bytes(wav_bytes(x))
            (tmp / f"{name}.csv").write_text(table)
            recs.append({"name": name, "snr_db": snr, "noise_scale": scale, "gain": gain})
        manifest = {
            "data": str(data.resolve()), "source": source, "seed": seed, "minutes": minutes,
            "sample_rate": SAMPLE_RATE, "recordings": recs,
            "words": len(words), "keywords": sum(w.label != UNKNOWN_LABEL for w in words),
            "speakers": sorted({Path(w.source).name.split("_nohash_")[0] for w in words}),
            "voices": f"held-out: clips of {SPLIT_LISTS[split]} only", "split": split,
            "level_dbfs": list(LEVEL_DBFS), "gap_s": list(GAP_S), "long_silence_s": list(LONG_SILENCE_S),
            "snr_definition": "10 log10(mean speech power over the words' extents / mean noise power)",
            "note": ("synthetic speech: proves the pipeline, not accuracy on real speech" if source == "synthetic"
                     else "recordings made from the data set's held-out clips"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
