"""The stream's pre-model gate (issue #15): an input-level decision, before the model, that skips the whole model
on hops whose audio cannot hold a keyword. The one description of it: tx_stream.c computes it in C from the
generated config (`context`), `decide` is its bit-exact mirror, `calibrate` picks its parameters on validation
streams, and the run keeps them in Run.stream_gate_path (stream_gate.json).

The energy gate works on the model's own int8 input (the 49x10 MFCCs of the ring, after quantization): c0 of a
frame is its log-mel energy (the DCT's first coefficient), so one int8 per frame, already computed, tells
speech from the noise floor; integers only, so C and Python agree on every hop by construction. Per hop i:

    lo   = min of c0 over the 49 frames of the window (the quietest frame of the last second)
    hi   = max of c0 over frames first..48 (the newest part of the window, where a word the model can already
           classify must have energy)
    floor (Q8, int32): hop 0: lo * 256; else if lo * 256 <= floor: lo * 256 (falls at once); else
           floor + ((lo * 256 - floor) >> rise) (rises slowly: a word that fills a whole window does not lift
           the floor to its own level; the shifted value is never negative, so C's >> is well defined)
    open = hi * 256 - floor >= margin * 256

A difference detection on the input (Sponner et al.: skip when the input barely changed) does not fit a stream
window that slides 12-13 of its 49 frames every hop (the input always changes); the energy gate asks the
question that matters here, "is there anything above the noise in the window", and is calibrated per stream.

A skipped hop runs no inference (0 MACs; the temporal policies' state is untouched: they see the inferred hops
only), its exit is -1, its class the silence class, and the posterior smoothing sees the silence class with
probability 1 (int8: `_silence_` at the code of 1.0, every other class at the code of 0.0).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from tinyexit.errors import TinyexitError

KINDS = ("off", "energy")
FRAMES = 49
SILENCE = "_silence_"
MARGINS = tuple(range(0, 121, 4))          # calibration grid: int8 codes of c0 above the floor
FIRSTS = (0, 12, 18, 24, 30, 36)           # calibration grid: the first frame the gate looks at
RISE = 4                                   # default: the floor rises by 1/16 of the distance per hop
RISES = (2, 4)                             # calibration grid: 1/4 (1 s to close 1/e at 250-ms hops) or 1/16 (4 s)


@dataclasses.dataclass(frozen=True)
class Gate:
    kind: str = "off"
    margin: int = 0          # int8 codes of c0 (the model's input scale) above the noise floor
    first: int = 0           # the first frame of the window whose energy can open the gate (0..48)
    rise: int = RISE         # the floor's rise per hop: 1 / 2**rise of the distance

    def check(self) -> "Gate":
        if self.kind not in KINDS:
            raise TinyexitError(f"--gate {self.kind!r}: use one of {', '.join(KINDS)}")
        if not (0 <= self.margin <= 255 and 0 <= self.first < FRAMES and 0 <= self.rise <= 16):
            raise TinyexitError(f"gate settings out of range (margin {self.margin}, first frame {self.first}, rise "
                                f"{self.rise}): margin 0..255 codes, first frame 0..48, rise 0..16")
        return self

    @property
    def on(self) -> bool:
        return self.kind != "off"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Gate":
        try:
            return cls(str(d["kind"]), int(d.get("margin", 0)), int(d.get("first", 0)),
                       int(d.get("rise", RISE))).check()
        except (KeyError, TypeError, ValueError):
            raise TinyexitError(f"stream gate {d!r} is malformed; re-calibrate it with `tinyexit stream RUN "
                                f"--calibrate-gate`") from None

    def describe(self) -> str:
        if not self.on:
            return "gate off (the model runs every hop)"
        return (f"energy gate: c0 of frames {self.first}..48 at least {self.margin} codes above the noise floor "
                f"(rise 1/{2 ** self.rise} per hop)")


def run_gate(run) -> Gate:
    """The run's calibrated gate (stream_gate.json), else off."""
    from tinyexit.io import read_json
    path = run.stream_gate_path
    if not path.is_file():
        return Gate()
    return Gate.from_dict(read_json(path, "re-calibrate it with `tinyexit stream RUN --calibrate-gate`")["gate"])


def decide(x_q: np.ndarray, gate: Gate) -> tuple[np.ndarray, np.ndarray]:
    """int8 model inputs [H, 49, 10] (or [H, 490]) of consecutive hops -> (open bool [H], floor int64 [H], the
    Q8 noise floor after each hop; 0 with the gate off). The module doc's rule, in tx_stream.c's integers."""
    x = np.asarray(x_q, np.int64).reshape(len(x_q), FRAMES, -1)
    n = len(x)
    if not gate.on:
        return np.ones(n, bool), np.zeros(n, np.int64)
    c0 = x[:, :, 0]
    lo, hi = c0.min(axis=1) * 256, c0[:, gate.first:].max(axis=1) * 256
    floor = np.zeros(n, np.int64)
    f = 0
    for i in range(n):
        m = int(lo[i])
        f = m if i == 0 or m <= f else f + ((m - f) >> gate.rise)
        floor[i] = f
    return hi - floor >= gate.margin * 256, floor


def skipped_posterior(classes, out_q: dict) -> np.ndarray:
    """The int8 posteriors a skipped hop adds to the smoothing: the silence class at probability 1, the others 0
    (the exits' output quantization)."""
    if SILENCE not in classes:
        raise TinyexitError(f"the run's classes ({', '.join(classes)}) have no {SILENCE}; the gate needs a silence "
                            f"class for the hops it skips (use --gate off)")
    scale, zp = float(out_q["scale"]), int(out_q["zero_point"])
    q = np.full(len(classes), max(-128, min(127, zp)), np.int64)
    q[list(classes).index(SILENCE)] = max(-128, min(127, int(math.floor(1.0 / scale + 0.5)) + zp))
    return q


def context(gate: Gate, classes, out_q: dict) -> dict:
    """The generated config's gate values (tx_stream_config.h.j2)."""
    gate.check()
    post = skipped_posterior(classes, out_q) if gate.on else np.zeros(len(classes), np.int64)
    return dict(gate=int(gate.on), gate_kind=gate.kind, gate_margin=gate.margin, gate_first=gate.first,
                gate_rise=gate.rise, gate_silence=(list(classes).index(SILENCE) if gate.on else 0),
                gate_posterior=[int(v) for v in post])


def validation_streams(run, out, minutes: float = 3.0, snrs=(20.0, 10.0), seed: int = 0):
    """Recordings for calibrating the gate, made from the VALIDATION split of the run's data folder
    (tinyexit.data.streams, split="validation"): the test recordings never choose the gate."""
    from pathlib import Path

    from tinyexit.data.streams import make_streams
    data = (run.model_json().get("data") or {}).get("dir")
    if not data or not Path(data).is_dir():
        raise TinyexitError(f"{run.path}/model.json names no data folder that exists ({data}); pass validation "
                            f"recordings with --gate-streams DIR (`tinyexit data kws-stream` with the validation "
                            f"split)")
    return make_streams(out, data, minutes=minutes, snrs=snrs, seed=seed, split="validation")


def read_validation(streams) -> list[tuple[str, np.ndarray, object]]:
    """[(name, pcm, truth CSV path)] of a folder of validation recordings; test recordings are refused."""
    from pathlib import Path

    from tinyexit.data.streams import MANIFEST
    from tinyexit.io import read_json
    from tinyexit.stream_app import read_pcm
    streams = Path(streams)
    man = read_json(streams / MANIFEST, "make validation recordings (`tinyexit stream RUN --calibrate-gate` makes "
                                        "them from the run's data)")
    if man.get("split") != "validation":
        raise TinyexitError(f"{streams} holds {man.get('split', 'test')} recordings; the gate is calibrated on "
                            f"recordings of the validation split only (leave --gate-streams out to make them)")
    return [(r["name"], read_pcm(streams / f"{r['name']}.wav"), streams / f"{r['name']}.csv")
            for r in man["recordings"]]


def candidates(margins=MARGINS, firsts=FIRSTS, rises=RISES) -> list[Gate]:
    return [Gate("energy", m, f, r) for r in rises for f in firsts for m in margins]


def calibrate(run, recordings, cfg, work, *, policy: dict | None = None, fr_tolerance: float = 0.005,
              fa_tolerance: float = 1.0, grid=None, progress: bool = True) -> dict:
    """The energy gate that skips the most model MACs on `recordings` [(name, pcm, truth CSV)] (validation ones)
    while, on EVERY recording, its false-reject rate stays within `fr_tolerance` of the same stream without a gate
    and its false accepts per hour within `fa_tolerance` of it (the same policy: the run's, or `policy`).
    Returns {"gate", "reference", "chosen", "candidates"}; the gate is off when no candidate qualifies."""
    import dataclasses as dc
    from pathlib import Path

    from tinyexit import stream_app as sa
    grid = candidates() if grid is None else grid
    pol = run.policy() if policy is None else policy
    recs = []
    for name, pcm, truth in recordings:
        x_q = sa.features(run, pcm, dc.replace(cfg, gate=Gate()), Path(work) / name)
        outs, conf = sa.exit_outputs(run, x_q, pol)
        recs.append((name, pcm, truth, x_q, outs, conf, [sa.fnv1a(x) for x in x_q]))

    def measure(gate: Gate) -> list[dict]:
        c = dc.replace(cfg, gate=gate)
        rows = []
        for name, pcm, truth, x_q, outs, conf, fh in recs:
            is_open, _ = decide(x_q, gate)
            hops = sa.replay(run, x_q, [o[is_open] for o in outs], c,
                             None if conf is None else [o[is_open] for o in conf], pol, fhash=fh)
            d = sa.summary(run, hops, pcm, c, truth_csv=truth)
            rows.append({"name": name, "false_reject_rate": d["score"]["false_reject_rate"],
                         "false_rejects": d["false_rejects"], "false_accepts_per_hour": d["false_accepts_per_hour"],
                         "macs_per_second": d["macs_per_second"], "skipped": float(np.mean(~is_open))})
        return rows

    ref = measure(Gate())
    table = []
    it = grid
    if progress:
        from tqdm import tqdm
        it = tqdm(grid, desc="gate candidates", unit="gate")
    for g in it:
        rows = measure(g)
        ok = all(r["false_reject_rate"] <= b["false_reject_rate"] + fr_tolerance + 1e-12 and
                 r["false_accepts_per_hour"] <= b["false_accepts_per_hour"] + fa_tolerance + 1e-9
                 for r, b in zip(rows, ref))
        table.append({"gate": g.as_dict(), "ok": ok, "macs_per_second": float(sum(r["macs_per_second"] for r in rows)),
                      "recordings": rows})
    good = [t for t in table if t["ok"]]
    best = min(good, key=lambda t: (t["macs_per_second"], t["gate"]["margin"])) if good else None
    gate = Gate.from_dict(best["gate"]) if best else Gate()
    return {"gate": gate.as_dict(), "reference": ref, "chosen": best, "candidates": table,
            "rule": f"fewest MACs with, on every validation recording, false rejects <= the ungated stream's + "
                    f"{100 * fr_tolerance:g} pt and false accepts per hour <= its + {fa_tolerance:g}",
            "policy": pol.get("policy"), "settings": {"hop_ms": cfg.hop_ms, "smooth": cfg.smooth,
                                                      "threshold": cfg.threshold, "refractory_s": cfg.refractory_s}}


def save(run, result: dict, streams: str) -> None:
    from tinyexit.io import write_json
    write_json(run.stream_gate_path, {**{k: v for k, v in result.items() if k != "candidates"},
                                      "validation_streams": str(streams), "candidates": result["candidates"]})
