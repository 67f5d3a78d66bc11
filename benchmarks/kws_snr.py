"""Keyword-spotting accuracy per SNR of a trained KWS run (issue #15): the run's test split (held-out voices) with
background noise mixed in at SNR = clean, 20, 10, 5, 0 dB, float (Keras) and int8 (Run.oracle(), tflite_micro),
at the final exit and at every early exit; plus how the run classifies windows of digital silence and of very
quiet noise (the share called `_silence_`).

    .venv/bin/python benchmarks/kws_snr.py --run RUN [--json OUT] [--snr 20,10,5,0] [--quiet-windows 200]

The noise is the data's own mechanism (tinyexit.data.features.prepare_clips with Augment(snr_db=(s, s)), no
shift, noise in every clip, fixed seed: the test split's seed): a one-second stretch of a random
`_background_noise_/` file scaled so that 10 log10(speech power over the word's extent / noise power) = s, then
clipped to [-1, 1] as training clips. "clean" is the test clips with no noise at all (for synthetic speech, the
run's own test split carries noise at gains <= 0.1; its accuracy is also printed as "run's test split").
Quiet windows: background noise with its peak uniform in -90..-50 dBFS, as 16-bit PCM (features.quiet_noise).
A run trained with a streaming front-end level (front_end.level fixed:N, tinyexit.data.level) is measured with
it: the clips made as int16 PCM (features.prepare_pcm) with their peaks drawn from the run's own
augment.gain_dbfs range (the recorded level without it), divided by the level; "clean" has no noise.
`--level fixed:8192 --gain-dbfs -30,-3` measures any run that way (a per-clip run: the cost of the streaming
level before retraining).
A run without quant/ is measured in float only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import write_json

SNRS = (20.0, 10.0, 5.0, 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--snr", default=",".join(f"{s:g}" for s in SNRS), help="SNRs in dB besides clean")
    ap.add_argument("--quiet-windows", type=int, default=200, help="windows of quiet noise classified")
    ap.add_argument("--level", default=None, help="front-end level instead of the run's (e.g. fixed:8192: a per-clip "
                                                  "run measured as the stream firmware runs it, not retrained)")
    ap.add_argument("--gain-dbfs", default=None, help="LOW,HIGH: recording peak levels with a streaming level "
                                                      "(default: the run's augment.gain_dbfs)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except TinyexitError as e:
        print(f"kws_snr: error: {e}", file=sys.stderr)
        return 2


class Scorer:
    """Float and int8 (when quantized) predictions of every exit of a run, early exits first, final last."""

    def __init__(self, run):
        self.model = run.load_model()
        meta = run.model_json()
        self.classes = list(meta["classes"])
        self.exits = [e["name"] for e in meta["exits"]]
        self.pipe = run.oracle() if run.quant.manifest_path.is_file() else None

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """{"float/<exit>": predicted class [N], "int8/<exit>": ...}."""
        outs = self.model.predict(x, batch_size=256, verbose=0)
        if isinstance(outs, dict):
            outs = [outs[n] for n in self.exits]
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        pred = {f"float/{n}": np.argmax(o, -1) for n, o in zip(self.exits, outs)}
        if self.pipe is not None:
            pred.update({f"int8/{n}": np.argmax(o, -1) for n, o in zip(self.exits, self.pipe.run(x))})
        return pred


def _run(args) -> int:
    from tinyexit.data.features import (Augment, front_end, mfcc, prepare_clips, prepare_pcm, quiet_noise, quiet_pcm,
                                        _noise_stretch)
    from tinyexit.data.level import Level
    from tinyexit.data.recipe import DataConfig
    from tinyexit.data.speech_commands import load_speech_commands, read_wav
    from tinyexit.run import Run

    try:
        snrs = [float(s) for s in args.snr.split(",") if s.strip()]
    except ValueError:
        raise TinyexitError(f"--snr {args.snr!r}: give comma-separated SNRs in dB, e.g. 20,10,5,0") from None
    run = Run(args.run)
    dc = DataConfig(**run.model_json()["data"])
    if dc.kind != "kws":
        raise TinyexitError(f"{args.run} is a {dc.kind} run; kws_snr measures keyword spotters")
    ds = load_speech_commands(dc.dir, seed=dc.seed)
    if not ds.noise_files:
        raise TinyexitError(f"{dc.dir} has no _background_noise_/ files to mix in")
    sc = Scorer(run)
    seed = dc.seed + 2                         # the test split's seed (tinyexit.data.recipe.features_for)
    level = Level.parse(dc.level if args.level is None else args.level)
    gain = Augment.from_dict(dc.train_augment).gain_dbfs if level.streams else None
    if args.gain_dbfs is not None:
        try:
            gain = tuple(float(v) for v in args.gain_dbfs.split(","))
        except ValueError:
            gain = ()
        if len(gain) != 2 or not gain[0] <= gain[1] <= 0 or not level.streams:
            raise TinyexitError(f"--gain-dbfs {args.gain_dbfs!r}: give LOW,HIGH dBFS (LOW <= HIGH <= 0) with a "
                                f"streaming level (--level fixed:N)")
    print(f"run {args.run}: exits {sc.exits}, {'float and int8' if sc.pipe else 'float only (no quant/)'}, "
          f"data {dc.dir} ({dc.source}), train augment {dc.train_augment}, front-end level {level}")
    rows = {}
    xt, yt = run.split("test")
    if args.level is None:
        rows["run's test split"] = _acc(sc.predict(xt), yt)
    for snr in [None] + snrs:
        aug = None if snr is None else Augment(time_shift_ms=0.0, noise_probability=1.0, snr_db=(snr, snr))
        if level.streams:
            aug = Augment(time_shift_ms=0.0, noise_probability=0.0 if snr is None else 1.0,
                          snr_db=None if snr is None else (snr, snr), gain_dbfs=gain)
            pcm, y = prepare_pcm(ds, "test", augment=aug, seed=seed)
            x = level.features(pcm)
        else:
            clips, y = prepare_clips(ds, "test", augment=aug, seed=seed)
            x = mfcc(clips)
        rows["clean" if snr is None else f"{snr:g} dB"] = _acc(sc.predict(x), y)
    keys = list(rows["clean"])
    print(f"\ntest accuracy (%), {len(yt)} clips\n{'':>18}" + "".join(f"{k:>14}" for k in keys))
    for name, r in rows.items():
        print(f"{name:>18}" + "".join(f"{100 * r[k]:>14.1f}" for k in keys))

    sil = sc.classes.index("_silence_")
    rng = np.random.default_rng(seed)
    noises = [read_wav(p) for p in ds.noise_files]
    levels = rng.uniform(-90.0, -50.0, args.quiet_windows)
    if level.streams:
        digital = level.features(np.zeros((1, 16000), np.int16))
        quiet = level.features(np.stack([quiet_pcm(_noise_stretch(noises, rng), float(v)) for v in levels]))
    else:
        digital = front_end(np.zeros(16000, np.int16))[None, ..., None]
        quiet = mfcc(np.stack([quiet_noise(_noise_stretch(noises, rng), float(v)) for v in levels]))
    silence = {}
    for name, x in (("digital silence", digital), ("quiet noise -90..-50 dBFS", quiet)):
        silence[name] = {k: float(np.mean(p == sil)) for k, p in sc.predict(x).items()}
        called = {k: sc.classes[int(np.bincount(p).argmax())] for k, p in sc.predict(x).items()}
        silence[name + " (most common class)"] = called
    print(f"\nshare of windows classified _silence_ (%)\n{'':>26}" + "".join(f"{k:>14}" for k in keys))
    for name in ("digital silence", "quiet noise -90..-50 dBFS"):
        print(f"{name:>26}" + "".join(f"{100 * silence[name][k]:>14.1f}" for k in keys))
    print(f"{'digital silence called':>26}" + "".join(f"{silence['digital silence (most common class)'][k]:>14}"
                                                      for k in keys))
    if args.json:
        write_json(args.json, {"run": str(args.run), "exits": sc.exits, "source": dc.source, "level": str(level),
                               "gain_dbfs": list(gain) if gain else None,
                               "train_augment": dc.train_augment, "clips": int(len(yt)), "seed": seed,
                               "accuracy": rows, "silence": silence, "quiet_windows": args.quiet_windows,
                               "snr_definition": "10 log10(mean power of the clip over its speech extent (samples "
                                                 "from the first to the last reaching 5 % of the peak) / mean "
                                                 "noise power over the second)"})
        print(f"\nwrote {args.json}")
    return 0


def _acc(pred: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean(p == y)) for k, p in pred.items()}


if __name__ == "__main__":
    sys.exit(main())
