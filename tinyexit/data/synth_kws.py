"""Offline keyword-spotting data set in the Speech Commands v2 layout, synthesized with espeak-ng (and flite).

Speakers are (engine, accent, voice variant, base pitch, base speed) tuples; every clip of a speaker varies
pitch and speed a little around that speaker's base. Validation and test lists hold out whole speakers,
so accuracy on them measures generalisation to unseen voices. Background noise files (white, pink, brown,
hum, babble made from other speakers) go to `_background_noise_/` and are mixed in at training time.

Synthetic speech proves the pipeline, not accuracy on real speech: reports built on it say so.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from tinyexit.data.speech_commands import wav_bytes
from tinyexit.errors import MissingToolError, TinyexitError
from tinyexit.io import atomic_dir

SAMPLE_RATE = 16000
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The auxiliary words of Speech Commands v2, used for the _unknown_ class.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
                 "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "learn", "follow",
                 "forward", "backward", "visual")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
FLITE_VOICES = ("kal", "awb", "rms", "slt", "kal16")
ESPEAK_INSTALL = "apt-get install -y --no-install-recommends espeak-ng"


@dataclass(frozen=True)
class Speaker:
    engine: str          # "espeak" or "flite"
    voice: str           # espeak "accent+variant" or flite voice name
    pitch: int           # espeak pitch 0..99 (flite: target mean f0 in Hz)
    speed: int           # espeak words per minute (flite: duration stretch x100)

    @property
    def ident(self) -> str:
        """A stable 8-hex-digit id, like the speaker hashes of Speech Commands file names."""
        key = f"{self.engine}:{self.voice}:{self.pitch}:{self.speed}"
        return hashlib.sha1(key.encode()).hexdigest()[:8]


def espeak_variants() -> list[str]:
    """Voice variants espeak-ng knows (e.g. 'f3', 'croak'); empty when espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        return []
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            names.append(fields[4][3:])
    return sorted(set(names))


def make_speakers(n: int, rng: np.random.Generator) -> list[Speaker]:
    """Draw `n` distinct speakers from espeak-ng accents x variants (and flite voices when installed)."""
    if shutil.which("espeak-ng") is None:
        raise MissingToolError("espeak-ng", ESPEAK_INSTALL)
    variants = espeak_variants() or ["m1", "f1"]
    pool: list[Speaker] = []
    for accent in ESPEAK_ACCENTS:
        for var in variants:
            pool.append(Speaker("espeak", f"{accent}+{var}", int(rng.integers(25, 80)), int(rng.integers(135, 190))))
    if shutil.which("flite"):
        for v in FLITE_VOICES:
            for _ in range(3):
                pool.append(Speaker("flite", v, int(rng.integers(90, 190)), int(rng.integers(80, 115))))
    if n > len(pool):
        raise TinyexitError(f"asked for {n} speakers but only {len(pool)} voices exist; use --speakers <= {len(pool)}")
    idx = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(idx)]


def _parse_wav_bytes(data: bytes) -> tuple[int, np.ndarray]:
    """Parse a PCM16 WAV stream whose header sizes may be bogus (espeak-ng --stdout writes 0x7fffffff)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TinyexitError("synthesizer returned no WAV data")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
        if cid == b"data":
            body = data[pos + 8:]
            body = body[: len(body) // 2 * 2]
            return rate, np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0
        pos += 8 + size
    raise TinyexitError("synthesizer WAV has no data chunk")


def synthesize(word: str, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """One utterance of `word`, float32 at 16 kHz, per-clip jitter of pitch and speed around the speaker's."""
    if speaker.engine == "espeak":
        pitch = int(np.clip(speaker.pitch + rng.integers(-8, 9), 0, 99))
        speed = int(np.clip(speaker.speed + rng.integers(-15, 16), 120, 230))
        cmd = ["espeak-ng", "-v", speaker.voice, "-p", str(pitch), "-s", str(speed), "--stdout", word]
    else:
        f0 = speaker.pitch + int(rng.integers(-10, 11))
        stretch = (speaker.speed + int(rng.integers(-8, 9))) / 100.0
        cmd = ["flite", "-voice", speaker.voice, "--setf", f"int_f0_target_mean={f0}",
               "--setf", f"duration_stretch={stretch:.2f}", "-t", word, "-o", "/dev/stdout"]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        raise TinyexitError(f"{cmd[0]} failed for {word!r} with voice {speaker.voice}: {res.stderr.decode()[:200]}")
    rate, x = _parse_wav_bytes(res.stdout)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return _trim_and_place(x, rng)


def _trim_and_place(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Trim leading/trailing near-silence and place the word at a random offset inside a 1 s clip."""
    env = np.abs(x)
    thr = 0.02 * (env.max() + 1e-9)
    nz = np.flatnonzero(env > thr)
    if nz.size:
        x = x[max(0, nz[0] - 400): nz[-1] + 400]
    if len(x) > SAMPLE_RATE:           # rare: very slow voice; keep the middle second
        start = (len(x) - SAMPLE_RATE) // 2
        x = x[start:start + SAMPLE_RATE]
    out = np.zeros(SAMPLE_RATE, np.float32)
    off = int(rng.integers(0, SAMPLE_RATE - len(x) + 1))
    out[off:off + len(x)] = x * float(rng.uniform(0.3, 0.95)) / (np.abs(x).max() + 1e-9)
    return out


def make_noises(rng: np.random.Generator, seconds: int = 30) -> dict[str, np.ndarray]:
    """Background noise files: white, pink, brown, mains hum with harmonics, and running-water-like noise."""
    n = seconds * SAMPLE_RATE
    white = rng.standard_normal(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    pink = np.fft.irfft(spec / np.sqrt(f), n)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(4001) / 4001, mode="same")      # remove the drift
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 8))
    hum += 0.3 * rng.standard_normal(n)
    band = np.fft.irfft(spec * ((f > 300) & (f < 3000)), n)             # "running tap": band-limited noise
    band *= 1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    noises = {"white_noise": white, "pink_noise": pink, "brown_noise": brown, "hum": hum, "running_tap": band}
    return {k: (0.5 * v / np.abs(v).max()).astype(np.float32) for k, v in noises.items()}


def write_wav(path: Path, x: np.ndarray) -> None:
    path.write_bytes(wav_bytes(x, rounded=False))


def make_kws_dataset(out: str | os.PathLike, *, speakers: int = 90, takes: int = 2, unknown_per_speaker: int = 4,
                     seed: int = 0, val_fraction: float = 0.12, test_fraction: float = 0.12,
                     workers: int | None = None, progress: bool = True) -> Path:
    """Synthesize a keyword data set in the Speech Commands v2 layout into `out` (atomically).

    Each speaker says each keyword `takes` times and `unknown_per_speaker` other words. Whole speakers
    go to the validation and test lists. Deterministic for a given seed and installed voices.
    Returns the data set folder.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    spk = make_speakers(speakers, rng)
    n_val = max(1, round(val_fraction * speakers))
    n_test = max(1, round(test_fraction * speakers))
    order = rng.permutation(len(spk))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[spk[i].ident] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"

    jobs = []   # (word, speaker, take, seed) -- per-job seeds keep the result independent of thread timing
    for s in spk:
        for w in KEYWORDS:
            jobs += [(w, s, k) for k in range(takes)]
        for w in rng.choice(UNKNOWN_WORDS, size=min(unknown_per_speaker, len(UNKNOWN_WORDS)), replace=False):
            jobs.append((str(w), s, 0))
    seeds = rng.integers(0, 2**63 - 1, size=len(jobs))

    with atomic_dir(out) as tmp:
        for w in KEYWORDS + UNKNOWN_WORDS:
            (tmp / w).mkdir()

        def run(j):
            (word, s, k), sd = jobs[j], seeds[j]
            x = synthesize(word, s, np.random.default_rng(sd))
            rel = f"{word}/{s.ident}_nohash_{k}.wav"
            write_wav(tmp / rel, x)
            return rel, split_of[s.ident]

        results = []
        bar = _progress(len(jobs), "synthesizing clips", progress)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            for r in pool.map(run, range(len(jobs))):
                results.append(r)
                bar.update(1)
        bar.close()

        (tmp / "_background_noise_").mkdir()
        for name, x in make_noises(rng).items():
            write_wav(tmp / "_background_noise_" / f"{name}.wav", x)
        val = sorted(r for r, sp in results if sp == "validation")
        test = sorted(r for r, sp in results if sp == "test")
        (tmp / "validation_list.txt").write_text("\n".join(val) + "\n")
        (tmp / "testing_list.txt").write_text("\n".join(test) + "\n")
        meta = {"source": "synthetic", "generator": "tinyexit.data.synth_kws", "seed": seed,
                "speakers": [{"id": s.ident, "engine": s.engine, "voice": s.voice, "pitch": s.pitch,
                              "speed": s.speed, "split": split_of[s.ident]} for s in spk],
                "clips": len(results),
                "note": "Synthetic speech proves the pipeline, not accuracy on real speech."}
        (tmp / "tinyexit_dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled, mininterval=1.0)
