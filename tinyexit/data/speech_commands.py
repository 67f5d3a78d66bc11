"""Reader for the Speech Commands v2 layout: a folder per word, `validation_list.txt`, `testing_list.txt`,
`_background_noise_/`. Reads the real data set and the synthetic one `tinyexit data kws` writes alike.

Classes follow MLPerf Tiny's KWS label order, so models trained here and there agree on label indices:
the 10 keywords, `_silence_` (made from background noise) and `_unknown_` (every other word folder).
"""
from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
CLASSES = KEYWORDS + ("_silence_", "_unknown_")
SILENCE, UNKNOWN = CLASSES.index("_silence_"), CLASSES.index("_unknown_")
SAMPLE_RATE = 16000
NOISE_DIR = "_background_noise_"
SPLITS = ("train", "validation", "test")


@dataclass
class KwsDataset:
    root: Path
    source: str                                        # "synthetic" or "speech_commands"
    items: dict[str, list[tuple[str, int]]]            # split -> [(relative wav path, label)]
    noise_files: list[Path] = field(default_factory=list)
    classes: tuple[str, ...] = CLASSES

    def counts(self) -> dict[str, list[int]]:
        return {s: np.bincount([lab for _, lab in v], minlength=len(self.classes)).tolist()
                for s, v in self.items.items()}


def wav_bytes(x: np.ndarray, *, rounded: bool = True) -> bytes:
    """A 16 kHz mono PCM16 WAV of float samples in [-1, 1] (clipped there), scaled by 32767 and rounded to the
    nearest code, or truncated toward zero with rounded=False (how the offline data set was always written)."""
    import io
    scaled = np.clip(x, -1, 1) * 32767
    pcm = (np.round(scaled) if rounded else scaled).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def wav_frames(path: str | Path, fix: str) -> tuple[int, int, int, bytes]:
    """(sample rate, channels, bytes per sample, raw frames) of a WAV file; an unreadable one is a one-line
    TinyexitError ending with `fix`."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        raise TinyexitError(f"{path}: not a readable WAV file ({e}); {fix}") from e


def read_wav(path: str | Path) -> np.ndarray:
    """Read a 16 kHz mono PCM16 WAV as float32 in [-1, 1); clear errors for anything else."""
    path = Path(path)
    rate, ch, width, raw = wav_frames(path, "re-create or delete it")
    if width != 2:
        raise TinyexitError(f"{path}: {8 * width}-bit samples; expected 16-bit PCM")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return x


def _read_list(root: Path, name: str) -> list[str]:
    p = root / name
    if not p.is_file():
        raise TinyexitError(f"{root} is not in the Speech Commands v2 layout: {name} is missing. "
                            f"Point --data at the folder that holds the word folders and {name}, "
                            f"or make a data set with `tinyexit data kws --out DIR`.")
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]


def load_speech_commands(root: str | Path, *, silence_fraction: float = 0.1, unknown_fraction: float = 0.1,
                         seed: int = 0) -> KwsDataset:
    """Index a Speech Commands v2 style folder. `_unknown_` is subsampled and `_silence_` created so that
    each is about `*_fraction` of the keyword clips of its split (as MLPerf Tiny does)."""
    root = Path(root)
    if not root.is_dir():
        raise TinyexitError(f"data folder {root} does not exist; pass a Speech Commands v2 folder or make one "
                            f"with `tinyexit data kws --out {root}`")
    val_list, test_list = _read_list(root, "validation_list.txt"), _read_list(root, "testing_list.txt")
    missing = [k for k in KEYWORDS if not (root / k).is_dir()]
    if missing:
        raise TinyexitError(f"{root} is not in the Speech Commands v2 layout: keyword folders missing: "
                            f"{', '.join(missing)}. Each of {', '.join(KEYWORDS)} needs a folder of .wav clips.")
    noise_dir = root / NOISE_DIR
    noise_files = sorted(noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
    if not noise_files:
        raise TinyexitError(f"{root}/{NOISE_DIR}/ is missing or has no .wav files; it is needed for the "
                            f"_silence_ class and noise mixing. Copy the data set's background noise folder there.")
    word_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))
    if len(word_dirs) <= len(KEYWORDS):
        raise TinyexitError(f"{root} has no word folders besides the 10 keywords, so there is no _unknown_ class; "
                            f"add folders of other words (Speech Commands has 25)")
    all_files = {f"{d.name}/{f.name}" for d in word_dirs for f in d.glob("*.wav")}
    for name, lst in (("validation_list.txt", val_list), ("testing_list.txt", test_list)):
        bad = [p for p in lst if p not in all_files]
        if bad:
            raise TinyexitError(f"{root}/{name} lists {len(bad)} clips that do not exist, e.g. {bad[0]}; "
                                f"the list and the folders disagree (re-create the list or restore the clips)")
    split_of = {p: "validation" for p in val_list}
    split_of.update({p: "test" for p in test_list})
    rng = np.random.default_rng(seed)
    items: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    unknown: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for rel in sorted(all_files):
        word = rel.split("/", 1)[0]
        split = split_of.get(rel, "train")
        if word in KEYWORDS:
            items[split].append((rel, KEYWORDS.index(word)))
        else:
            unknown[split].append((rel, UNKNOWN))
    for s in SPLITS:
        n_kw = len(items[s])
        if n_kw == 0:
            raise TinyexitError(f"{root}: the {s} split has no keyword clips; check validation_list.txt and "
                                f"testing_list.txt (each split needs clips of the keywords)")
        n_unk = min(len(unknown[s]), int(np.ceil(unknown_fraction * n_kw)))
        pick = rng.choice(len(unknown[s]), size=n_unk, replace=False) if n_unk else []
        items[s] += [unknown[s][i] for i in sorted(pick)]
        items[s] += [("", SILENCE)] * int(np.ceil(silence_fraction * n_kw))   # "" = made from noise
    source = "speech_commands"
    meta = root / "tinyexit_dataset.json"
    if meta.is_file():
        try:
            source = json.loads(meta.read_text()).get("source", source)
        except json.JSONDecodeError:
            pass
    return KwsDataset(root=root, source=source, items=items, noise_files=noise_files)
