"""Reference streaming evaluation of a trained KWS run on the recordings of `tinyexit data kws-stream` (host only:
Python and the Keras model, no firmware; tinyexit.streaming). Per recording (clean and each SNR): false rejects,
false accepts (and per hour, by kind), duplicates, and the accuracy of one-second windows centred on the words.

    .venv/bin/python benchmarks/kws_stream_eval.py --run RUN --streams DIR [--json OUT] [--hop-ms 250]
        [--smooth-hops 3] [--threshold 0.7] [--refractory-s 1.0] [--exit NAME] [--sweep 0.5,0.7,0.8,0.9,0.95]
        [--level fixed:8192]

The front end divides by the run's level (tinyexit.data.level; per_clip: each window by its own maximum, which no
device can do); `--level fixed:N` measures a run as the firmware streams it whatever it was trained with.

Matching rule (tinyexit.data.stream_score, after MLPerf Tiny's streaming wake-word benchmark): a detection counts
for an occurrence of its keyword between the onset and 0.5 s after the offset; one detection per occurrence; other
detections of its label up to 1 s after the offset are duplicates or late, not false accepts (as MLPerf masks them).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tinyexit.errors import TinyexitError
from tinyexit.io import write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--streams", required=True, type=Path, help="folder written by `tinyexit data kws-stream`")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--hop-ms", type=float, default=250.0)
    ap.add_argument("--smooth-hops", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--refractory-s", type=float, default=1.0)
    ap.add_argument("--exit", default=None, help="the exit whose posteriors are used (default: the final exit)")
    ap.add_argument("--sweep", default="0.5,0.7,0.8,0.9,0.95",
                    help="thresholds also scored on the same posteriors (false rejects vs false accepts per hour)")
    ap.add_argument("--level", default=None,
                    help="front-end level instead of the run's: per_clip, fixed:N or peak:DECAY:FLOOR")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except TinyexitError as e:
        print(f"kws_stream_eval: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from tinyexit.data.streams import MANIFEST
    from tinyexit.io import read_json
    from tinyexit.streaming import StreamConfig, StreamModel, evaluate_recording

    manifest = read_json(args.streams / MANIFEST, "make the recordings with `tinyexit data kws-stream --out DIR`")
    cfg = StreamConfig(hop_ms=args.hop_ms, smooth_hops=args.smooth_hops, threshold=args.threshold,
                       refractory_s=args.refractory_s, exit=args.exit).check()
    try:
        sweep = [float(v) for v in args.sweep.split(",") if v.strip()]
    except ValueError:
        raise TinyexitError(f"--sweep {args.sweep!r}: give comma-separated thresholds, e.g. 0.5,0.9") from None
    sm = StreamModel(args.run, cfg.exit, level=args.level)
    note = manifest.get("note", "")
    print(f"front-end level {sm.level}" + ("" if args.level is None else " (not the run's)"))
    print(f"run {args.run} (exit {sm.exit}), streams {args.streams}: {manifest.get('minutes')} min each, "
          f"{manifest.get('keywords')} keyword occurrences, {len(manifest.get('speakers', []))} held-out speakers")
    if manifest.get("source") == "synthetic":
        print("SYNTHETIC SPEECH (espeak-ng/flite voices): these figures prove the pipeline, "
              "not accuracy on real speech")
    print(f"hop {cfg.hop_ms:g} ms, posteriors averaged over {cfg.smooth_hops} hops, threshold {cfg.threshold:g}, "
          f"refractory {cfg.refractory_s:g} s; detection window: onset .. offset + 0.5 s (MLPerf)")
    print(f"{'recording':>10} {'SNR dB':>7} {'FR':>5} {'FR %':>6} {'FA':>4} {'FA/h':>7} {'wrong':>5} "
          f"{'unk':>4} {'none':>4} {'dup':>4} {'late':>4} {'acc %':>6} {'words':>6} {'sil.':>6} {'windows':>7}")
    rows = []
    t0 = time.time()
    for rec in manifest.get("recordings", []):
        wav = args.streams / f"{rec['name']}.wav"
        r = evaluate_recording(sm, wav, cfg, sweep=sweep)
        r["name"], r["snr_db"] = rec["name"], rec.get("snr_db")
        rows.append(r)
        k = r["false_accept_kinds"]
        snr = "clean" if r["snr_db"] is None else f"{r['snr_db']:g}"
        print(f"{r['name']:>10} {snr:>7} {r['false_rejects']:>5} {100 * r['false_reject_rate']:>6.1f} "
              f"{r['false_accepts']:>4} {r['false_accepts_per_hour']:>7.1f} {k['wrong_label']:>5} "
              f"{k['on_unknown']:>4} {k['no_word']:>4} {r['duplicates']:>4} {r['late']:>4} "
              f"{_pct(r['accuracy']):>6} {_pct(r['accuracy_words']):>6} "
              f"{_pct(r['accuracy_silence']):>6} {r['accuracy_windows']:>7}")
    print(f"({time.time() - t0:.0f} s; FR: keyword occurrences not detected; FA: detections matching no occurrence "
          f"(wrong label / on an unknown word / no word); dup: extra detections within 1 s after a detected word; "
          f"late: detections 0.5-1 s after the offset of an undetected word of their label (that word is a FR; MLPerf "
          f"does not count them as FA); "
          f"acc: 1-s windows centred on the words (words) and on gaps >= 1.2 s (sil., _silence_))")
    if sweep:
        print("threshold sweep (same posteriors), FR % / FA per hour:")
        print(f"{'threshold':>10} " + " ".join(f"{r['name']:>14}" for r in rows))
        for i, th in enumerate(sweep):
            cells = [f"{100 * r['sweep'][i]['false_reject_rate']:5.1f} / {r['sweep'][i]['false_accepts_per_hour']:6.1f}"
                     for r in rows]
            print(f"{th:>10g} " + " ".join(f"{c:>14}" for c in cells))
    if args.json:
        write_json(args.json, {"run": str(args.run), "streams": str(args.streams), "exit": sm.exit,
                               "level": str(sm.level), "level_is_the_runs": args.level is None,
                               "source": manifest.get("source"), "note": note,
                               "config": rows[0]["config"] if rows else None, "recordings": rows})
        print(f"wrote {args.json}")
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
