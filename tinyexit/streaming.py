"""A reference streaming evaluation on the host (Python, the trained Keras model; no firmware): the model slides
over a long recording, a detector turns its posteriors into keyword detections, and
tinyexit.data.stream_score scores them against the recording's ground-truth CSV.

Every hop (default 250 ms) the last second of audio goes through the front end with the level the run was
trained with (tinyexit.data.level): a run trained with a fixed level divides by it, as the firmware does
(tinyexit.stream_app); a run trained with MLPerf's per-clip division divides each one-second window by that
window's own signed maximum, which a device cannot do (the reference then flatters such a run: it sees what it
was trained on; `tinyexit stream` measures it with the firmware's fixed level). A running-peak level is computed
from a cold start in each window (the firmware does not implement it). `level` overrides the run's (e.g. a
per-clip run measured with the firmware's fixed level, as `tinyexit stream` runs it).
The chosen exit's posteriors are averaged over the last `smooth_hops` hops; a detection fires when the smoothed
posterior of a keyword is the largest and at least `threshold`, unless the last detection is less than
`refractory_s` old. Its time is the end of the audio heard at that hop.

The accuracy per recording classifies a one-second window centred on each ground-truth word (and on the middle
of each gap of at least 1.2 s, as `_silence_`): a per-SNR accuracy comparable with the test split's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.data.level import Level, run_level, to_pcm
from tinyexit.data.speech_commands import SAMPLE_RATE, read_wav
from tinyexit.data.stream_score import Occurrence, read_truth, score
from tinyexit.errors import TinyexitError
from tinyexit.run import Run, as_run

BATCH = 256
MIN_SILENCE_GAP_S = 1.2


@dataclass(frozen=True)
class StreamConfig:
    hop_ms: float = 250.0
    smooth_hops: int = 3
    threshold: float = 0.7
    refractory_s: float = 1.0
    exit: str | None = None           # None: the final exit

    def check(self) -> "StreamConfig":
        if not self.hop_ms > 0 or self.hop_ms * SAMPLE_RATE / 1000 < 1:
            raise TinyexitError(f"--hop-ms must be at least {1000 / SAMPLE_RATE:g} ms, got {self.hop_ms}")
        if self.smooth_hops < 1:
            raise TinyexitError(f"--smooth-hops must be at least 1, got {self.smooth_hops}")
        if not 0 < self.threshold <= 1:
            raise TinyexitError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.refractory_s < 0:
            raise TinyexitError(f"--refractory-s must be >= 0, got {self.refractory_s}")
        return self


class StreamModel:
    """A run's Keras model and one of its exits, applied to one-second windows of audio."""

    def __init__(self, run: Run | str, exit: str | None = None, level: str | None = None):
        self.run = as_run(run)
        meta = self.run.check_trained()
        if meta.get("task", "kws") != "kws":
            raise TinyexitError(f"{self.run.path} is a {meta.get('task')} run; streaming needs a kws run")
        self.classes = tuple(meta["classes"])
        names = [e["name"] for e in meta["exits"]]
        self.exit = exit or names[-1]
        if self.exit not in names:
            raise TinyexitError(f"{self.run.path} has no exit {self.exit!r}; choose one of {', '.join(names)}")
        self.model = self.run.load_model()
        self.level = run_level(self.run) if level is None else Level.parse(level)
        from tinyexit.models import output_names
        outs = output_names(self.model)
        self._index = outs.index(self.exit) if self.exit in outs else names.index(self.exit)

    def posteriors(self, clips: np.ndarray) -> np.ndarray:
        """float32 [N, 16000] raw audio windows (full-scale units, as read_wav gives them) -> [N, classes]
        posteriors of the exit (the run's front-end level per window)."""
        out = []
        for i in range(0, len(clips), BATCH):
            feats = self.level.features(to_pcm(clips[i:i + BATCH]))
            p = self.model.predict(feats, batch_size=BATCH, verbose=0)
            p = p if isinstance(p, list) else [p]
            out.append(np.asarray(p[self._index]))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)


def hop_windows(x: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(end times in s, windows [H, 16000]): the last second of audio at every hop, the first at 1 s."""
    ends = np.arange(SAMPLE_RATE, len(x) + 1, hop)
    if len(ends) == 0:
        raise TinyexitError(f"the recording is {len(x) / SAMPLE_RATE:.2f} s long; streaming needs at least 1 s")
    win = np.lib.stride_tricks.sliding_window_view(x, SAMPLE_RATE)[::hop][:len(ends)]    # a view: no copy
    return ends / SAMPLE_RATE, win


def detect(times: np.ndarray, probs: np.ndarray, classes, cfg: StreamConfig) -> list[tuple[float, str, float]]:
    """Detections [(time_s, label, smoothed posterior)] from per-hop posteriors (see the module doc)."""
    out: list[tuple[float, str, float]] = []
    last = -np.inf
    csum = np.cumsum(np.vstack([np.zeros((1, probs.shape[1])), probs]), axis=0)
    for i, t in enumerate(times):
        lo = max(0, i + 1 - cfg.smooth_hops)
        avg = (csum[i + 1] - csum[lo]) / (i + 1 - lo)
        k = int(np.argmax(avg))
        if classes[k].startswith("_") or avg[k] < cfg.threshold or t - last < cfg.refractory_s:
            continue
        out.append((float(t), classes[k], float(avg[k])))
        last = t
    return out


def centred_windows(x: np.ndarray, truth: list[Occurrence], classes) -> tuple[np.ndarray, np.ndarray]:
    """One-second windows centred on each word (label: its class) and on long gaps (`_silence_`)."""
    idx = {c: i for i, c in enumerate(classes)}
    centres, labels = [], []
    for o in truth:
        if o.label in idx:
            centres.append((o.onset + o.offset) / 2)
            labels.append(idx[o.label])
    if "_silence_" in idx:
        bounds = [0.0] + [v for o in truth for v in (o.onset, o.offset)] + [len(x) / SAMPLE_RATE]
        for a, b in zip(bounds[::2], bounds[1::2]):
            if b - a >= MIN_SILENCE_GAP_S:
                centres.append((a + b) / 2)
                labels.append(idx["_silence_"])
    starts = [min(max(0, int(c * SAMPLE_RATE) - SAMPLE_RATE // 2), max(0, len(x) - SAMPLE_RATE)) for c in centres]
    clips = np.stack([np.pad(x[s:s + SAMPLE_RATE], (0, max(0, SAMPLE_RATE - len(x[s:s + SAMPLE_RATE]))))
                      for s in starts]) if starts else np.zeros((0, SAMPLE_RATE), np.float32)
    return clips, np.asarray(labels, np.int64)


def evaluate_recording(sm: StreamModel, wav: str | Path, cfg: StreamConfig, truth_csv: str | Path | None = None,
                       sweep=()) -> dict:
    """Stream `wav` through the model; score against `truth_csv` (default: the CSV beside the WAV). `sweep`:
    further thresholds scored on the same posteriors ("sweep": false rejects and false accepts per hour each)."""
    cfg.check()
    wav = Path(wav)
    x = read_wav(wav)
    truth = read_truth(truth_csv or wav.with_suffix(".csv"))
    times, win = hop_windows(x, int(round(cfg.hop_ms * SAMPLE_RATE / 1000)))
    probs = sm.posteriors(win)
    dets = detect(times, probs, sm.classes, cfg)
    sc = score([(t, lab) for t, lab, _ in dets], truth, len(x) / SAMPLE_RATE)
    swept = []
    for th in sweep:
        d = detect(times, probs, sm.classes, StreamConfig(**{**asdict(cfg), "threshold": float(th)}).check())
        s = score([(t, lab) for t, lab, _ in d], truth, len(x) / SAMPLE_RATE)
        swept.append({"threshold": float(th), "false_rejects": s.false_rejects,
                      "false_reject_rate": s.false_reject_rate, "false_accepts": s.false_accepts,
                      "false_accepts_per_hour": s.false_accepts_per_hour})
    clips, labels = centred_windows(x, truth, sm.classes)
    silence = sm.classes.index("_silence_") if "_silence_" in sm.classes else -1
    pred = np.argmax(sm.posteriors(clips), axis=-1) if len(clips) else np.zeros(0, np.int64)
    return {"wav": str(wav), "seconds": len(x) / SAMPLE_RATE, "hops": len(times), "exit": sm.exit,
            "config": asdict(cfg), **sc.as_dict(), "sweep": swept,
            "accuracy": _share(pred == labels), "accuracy_windows": len(labels),
            "accuracy_words": _share((pred == labels)[labels != silence]),
            "accuracy_silence": _share((pred == labels)[labels == silence]),
            "detections_list": [{"time_s": t, "label": lab, "posterior": p} for t, lab, p in dets],
            "missed": [{"onset_s": on, "label": lab} for on, lab in sc.missed]}


def _share(hits: np.ndarray) -> float | None:
    return float(np.mean(hits)) if hits.size else None
