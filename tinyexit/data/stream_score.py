"""Scoring keyword detections on a long recording against its ground-truth CSV (`tinyexit data kws-stream`).

The rule follows MLPerf Tiny's streaming wake-word benchmark (mlcommons/tiny,
benchmark/training/streaming_wakeword/str_ww_util.py, `get_true_and_false_detections`): a wake word counts as
detected when the detector fires between its onset and 0.5 s after its offset (`true_pos_max_delay_sec=0.5`), and
firings up to 1.0 s after its offset are not false positives (`false_pos_suppresion_delay_sec=1.0`). MLPerf has one
wake word; here every keyword is scored with its own label:

- Detections are taken in time order (greedy in time). A detection of label L at time t (the end of the audio the
  detector had heard) matches the earliest not-yet-matched occurrence of L with onset <= t <= offset + WINDOW_S.
  Each occurrence is matched by at most one detection.
- A detection that matches nothing but falls within [onset, offset + SUPPRESS_S] of an occurrence of its label is
  not a false accept (MLPerf masks firings up to 1 s after a wake word): a `duplicate` when that occurrence was
  matched, `late` when it was not (the occurrence stays a false reject: the detection came too late).
- Every other detection is a false accept: `wrong_label` when it falls within [onset, offset + SUPPRESS_S] of a
  keyword occurrence of another label, `on_unknown` within that span of an unknown word, `no_word` elsewhere.
- Keyword occurrences left unmatched are false rejects. Unknown words are never to be detected (no false reject).
- Detections whose label starts with "_" (`_silence_`, `_unknown_`) are not keyword detections and are ignored.
False accepts per hour = false accepts / (recording length in hours).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from tinyexit.errors import TinyexitError

WINDOW_S = 0.5            # MLPerf: true_pos_max_delay_sec
SUPPRESS_S = 1.0          # MLPerf: false_pos_suppresion_delay_sec
REQUIRED = ("onset_s", "offset_s", "label")


@dataclass(frozen=True)
class Occurrence:
    onset: float
    offset: float
    label: str


@dataclass
class StreamScore:
    occurrences: int                      # keyword occurrences in the ground truth
    detections: int                       # keyword detections scored
    true_accepts: int
    false_rejects: int
    false_accepts: int
    duplicates: int
    hours: float
    late: int = 0
    false_accept_kinds: dict = field(default_factory=dict)      # wrong_label / on_unknown / no_word -> count
    matches: list = field(default_factory=list)                  # (detection time, label, occurrence onset)
    missed: list = field(default_factory=list)                   # (onset, label) of each false reject

    @property
    def false_reject_rate(self) -> float:
        return self.false_rejects / self.occurrences if self.occurrences else 0.0

    @property
    def false_accepts_per_hour(self) -> float:
        return self.false_accepts / self.hours if self.hours > 0 else 0.0

    def as_dict(self) -> dict:
        return {"occurrences": self.occurrences, "detections": self.detections, "true_accepts": self.true_accepts,
                "false_rejects": self.false_rejects, "false_reject_rate": self.false_reject_rate,
                "false_accepts": self.false_accepts, "false_accepts_per_hour": self.false_accepts_per_hour,
                "false_accept_kinds": dict(self.false_accept_kinds), "duplicates": self.duplicates,
                "late": self.late, "hours": self.hours}


def read_truth(path: str | os.PathLike) -> list[Occurrence]:
    """The rows of a ground-truth CSV (columns onset_s, offset_s, label; others ignored), sorted by onset.
    A missing or malformed file is a one-line TinyexitError."""
    path = Path(path)
    fix = "re-make it with `tinyexit data kws-stream --out DIR`"
    if not path.is_file():
        raise TinyexitError(f"{path} does not exist; {fix}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TinyexitError(f"{path} cannot be read as CSV ({e}); {fix}") from None
    if not rows:
        raise TinyexitError(f"{path} is empty (expected a header {','.join(REQUIRED)}); {fix}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise TinyexitError(f"{path}: the header lacks {', '.join(missing)} (expected {','.join(REQUIRED)}); {fix}")
    ix = [header.index(c) for c in REQUIRED]
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(ix):
            raise TinyexitError(f"{path} line {n}: {len(row)} fields, expected at least {max(ix) + 1}; {fix}")
        try:
            on, off = float(row[ix[0]]), float(row[ix[1]])
        except ValueError:
            raise TinyexitError(f"{path} line {n}: onset/offset {row[ix[0]]!r}, {row[ix[1]]!r} are not numbers; "
                                f"{fix}") from None
        label = row[ix[2]].strip()
        if not (math.isfinite(on) and math.isfinite(off)) or on < 0 or off < on:
            raise TinyexitError(f"{path} line {n}: onset {on} and offset {off} must be finite with "
                                f"0 <= onset <= offset; {fix}")
        if not label:
            raise TinyexitError(f"{path} line {n}: empty label; {fix}")
        out.append(Occurrence(on, off, label))
    return sorted(out, key=lambda o: (o.onset, o.offset))


def score(detections, truth: list[Occurrence], duration_s: float, *, window_s: float = WINDOW_S,
          suppress_s: float = SUPPRESS_S) -> StreamScore:
    """Score `detections` [(time_s, label)] against `truth` (read_truth) on a recording of `duration_s`."""
    if not duration_s > 0:
        raise TinyexitError(f"the recording's duration must be positive, got {duration_s}")
    dets = sorted(((float(t), str(lab)) for t, lab in detections if not str(lab).startswith("_")),
                  key=lambda d: d[0])
    keywords = [o for o in truth if not o.label.startswith("_")]
    unknown = [o for o in truth if o.label.startswith("_")]
    matched = [False] * len(keywords)
    res = StreamScore(occurrences=len(keywords), detections=len(dets), true_accepts=0, false_rejects=0,
                      false_accepts=0, duplicates=0, hours=duration_s / 3600.0,
                      false_accept_kinds={"wrong_label": 0, "on_unknown": 0, "no_word": 0})
    for t, lab in dets:
        hit = next((i for i, o in enumerate(keywords)
                    if not matched[i] and o.label == lab and o.onset <= t <= o.offset + window_s), None)
        if hit is not None:
            matched[hit] = True
            res.true_accepts += 1
            res.matches.append((t, lab, keywords[hit].onset))
            continue
        near = [i for i, o in enumerate(keywords) if o.label == lab and o.onset <= t <= o.offset + suppress_s]
        if near:
            if any(matched[i] for i in near):
                res.duplicates += 1
            else:
                res.late += 1
            continue
        res.false_accepts += 1
        if any(o.label != lab and o.onset <= t <= o.offset + suppress_s for o in keywords):
            kind = "wrong_label"
        elif any(o.onset <= t <= o.offset + suppress_s for o in unknown):
            kind = "on_unknown"
        else:
            kind = "no_word"
        res.false_accept_kinds[kind] += 1
    res.missed = [(o.onset, o.label) for i, o in enumerate(keywords) if not matched[i]]
    res.false_rejects = len(res.missed)
    return res
