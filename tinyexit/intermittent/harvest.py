"""Harvesters: a harvester is a power trace P(t) >= 0 [W] for t >= 0, **piecewise-constant** (every trace,
CSV files included, holds each power until the next breakpoint), so the energy it gives over [t0, t1] is an
exact sum and, under a constant load, a capacitor's energy changes linearly between breakpoints (energy.py).

    constant           a given power for ever (default 1 mW)
    solar              a day-like profile: half a sine over the daylight hours (sunrise at t = 0, or `start` s
                       before it; night after the daylight hours),
                       averaged exactly over steps of `step` s, times a seeded cloud process (clear and cloudy
                       spells of exponential length, each cloud letting through a random fraction); every day
                       has its own clouds, drawn from (seed, day)
    rf                 bursty: on/off bursts of exponential lengths, `on` power during a burst, nothing between;
                       drawn in chunks of `chunk` s from (seed, chunk index), each chunk starting in the
                       stationary on/off state (so the trace has no period and any time is reproducible alone)
    FILE.csv           rows of time_s,power_W after that header; row i's power holds from its time until the
                       next row's time, the last row's power for ever; the first row is at time 0

`parse_harvester("rf:seed=3")` reads the CLI's spec strings; the same spec (and seed) gives the same trace.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.units import format_quantity, parse_quantity


class HarvesterError(TinyexitError):
    """A harvester spec or trace file is wrong; the message names it and the fix."""


def _span(times: np.ndarray, powers: np.ndarray, cum: np.ndarray, x0: float, x1: float) -> float:
    """Energy over [x0, x1] of pieces starting at `times` with `powers`, `cum` the energy at each start: the
    partial first and last pieces plus the whole ones between (no difference of two large sums)."""
    last = len(powers) - 1
    i0 = min(last, max(0, int(np.searchsorted(times, x0, side="right")) - 1))
    i1 = min(last, max(0, int(np.searchsorted(times, x1, side="right")) - 1))
    if i0 == i1:
        return float(powers[i0] * (x1 - x0))
    return float(powers[i0] * (times[i0 + 1] - x0) + (cum[i1] - cum[i0 + 1]) + powers[i1] * (x1 - times[i1]))


class Trace:
    """A piecewise-constant power trace. Subclasses give `segment_at` and `_energy` (over [t0, t1], t0 <= t1);
    `peak_w` bounds the power from above (0 means the trace never gives anything)."""

    name: str = "trace"
    peak_w: float = 0.0

    def segment_at(self, t: float) -> tuple[float, float, float]:
        """(start, end, power) of the constant piece holding time t (start <= t < end; end may be inf)."""
        raise NotImplementedError

    def _energy(self, t0: float, t1: float) -> float:
        raise NotImplementedError

    def power(self, t: float) -> float:
        return self.segment_at(t)[2]

    def energy(self, t0: float, t1: float) -> float:
        """The energy [J] the trace gives over [t0, t1] (exact: a sum of power x duration)."""
        if t1 < t0:
            raise ValueError(f"energy over [{t0}, {t1}]: t1 < t0")
        return self._energy(t0, t1) if t1 > t0 else 0.0

    def segments(self, t0: float, t1: float = math.inf) -> Iterator[tuple[float, float, float]]:
        """The constant pieces covering [t0, t1), clipped to it."""
        t = t0
        while t < t1:
            a, b, p = self.segment_at(t)
            yield t, min(b, t1), p
            if b <= t:   # cannot happen for a valid trace; guards an endless loop
                raise RuntimeError(f"{self.name}: empty segment at t={t}")
            t = b

    def steps(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Breakpoints and powers over [t0, t1] for a step plot: times (n+1), powers (n)."""
        times, powers = [t0], []
        for _, b, p in self.segments(t0, t1):
            times.append(b)
            powers.append(p)
        return np.asarray(times), np.asarray(powers)

    def __str__(self) -> str:
        return self.name


class Piecewise(Trace):
    """Breakpoints 0 = t_0 < t_1 < ... with power p_i on [t_i, t_{i+1}); the last power holds for ever."""

    def __init__(self, times, powers, name: str = "piecewise"):
        times = np.asarray(times, dtype=float)
        powers = np.asarray(powers, dtype=float)
        if times.ndim != 1 or times.shape != powers.shape or len(times) == 0:
            raise ValueError("times and powers must be 1-D arrays of the same non-zero length")
        if times[0] != 0 or np.any(np.diff(times) <= 0) or np.any(powers < 0) or not np.all(np.isfinite(powers)):
            raise ValueError("times must start at 0 and increase; powers must be finite and >= 0")
        self.times, self.powers, self.name = times, powers, name
        self.peak_w = float(powers.max())
        # cumulative energy at each breakpoint
        self._cum = np.concatenate([[0.0], np.cumsum(powers[:-1] * np.diff(times))])

    def segment_at(self, t):
        i = max(0, int(np.searchsorted(self.times, t, side="right")) - 1)
        end = float(self.times[i + 1]) if i + 1 < len(self.times) else math.inf
        return float(self.times[i]), end, float(self.powers[i])

    def _energy(self, t0, t1):
        return _span(self.times, self.powers, self._cum, t0, t1)


class Chunked(Trace):
    """A generated trace made of chunks of `chunk_s` seconds; chunk k comes from `_chunk(k)` (relative breakpoints
    from 0 to chunk_s, powers), cached."""

    chunk_s: float = 1.0

    def __init__(self):
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _get(self, k: int):
        got = self._cache.get(k)
        if got is None:
            times, powers = self._chunk(k)
            keep = np.concatenate([[True], powers[1:] != powers[:-1]])   # merge runs of equal power
            times = np.concatenate([times[:-1][keep], times[-1:]])
            powers = powers[keep]
            cum = np.concatenate([[0.0], np.cumsum(powers * np.diff(times))])
            if len(self._cache) >= 64:
                self._cache.pop(next(iter(self._cache)))
            got = self._cache[k] = (times, powers, cum)
        return got

    def _locate(self, t: float) -> tuple[int, float]:
        k = int(t // self.chunk_s)
        return k, t - k * self.chunk_s

    def segment_at(self, t):
        k, x = self._locate(t)
        times, powers, _ = self._get(k)
        i = min(len(powers) - 1, max(0, int(np.searchsorted(times, x, side="right")) - 1))
        if k * self.chunk_s + float(times[i + 1]) <= t:   # t rounded onto the end of piece i: take the next
            i += 1
            if i == len(powers):
                k, i = k + 1, 0
                times, powers, _ = self._get(k)
        base = k * self.chunk_s
        return base + float(times[i]), base + float(times[i + 1]), float(powers[i])

    def _energy(self, t0, t1):
        k0, x0 = self._locate(t0)
        k1, x1 = self._locate(t1)
        if k0 == k1:
            return _span(*self._get(k0), x0, x1)
        total = _span(*self._get(k0), x0, self.chunk_s)
        total += sum(float(self._get(k)[2][-1]) for k in range(k0 + 1, k1))
        return total + _span(*self._get(k1), 0.0, x1)


class Shifted(Trace):
    """`inner` seen from `offset_s` on: P(t) = inner(t + offset_s)."""

    def __init__(self, inner: Trace, offset_s: float, name: str):
        self.inner, self.offset_s, self.name, self.peak_w = inner, offset_s, name, inner.peak_w

    def segment_at(self, t):
        a, b, p = self.inner.segment_at(t + self.offset_s)
        return max(0.0, a - self.offset_s), b - self.offset_s, p

    def _energy(self, t0, t1):
        return self.inner.energy(t0 + self.offset_s, t1 + self.offset_s)


class Solar(Chunked):
    def __init__(self, peak_w: float = 3e-3, seed: int = 0, day_s: float = 86400.0, daylight_s: float = 43200.0,
                 step_s: float = 1.0, clear_s: float = 600.0, cloud_s: float = 120.0, cloud_min: float = 0.1,
                 cloud_max: float = 0.5):
        super().__init__()
        if not (0 < daylight_s <= day_s and 0 < step_s <= day_s and clear_s > 0 and cloud_s > 0
                and 0 <= cloud_min <= cloud_max <= 1):
            raise HarvesterError(f"solar: need 0 < daylight <= day, 0 < step <= day, clear > 0, cloud > 0 and "
                                 f"0 <= cloud_min <= cloud_max <= 1 (got daylight={daylight_s}, day={day_s}, "
                                 f"step={step_s}, clear={clear_s}, cloud={cloud_s}, cloud_min={cloud_min}, "
                                 f"cloud_max={cloud_max}).")
        self.peak_w, self.seed, self.chunk_s = peak_w, seed, day_s
        self.daylight_s, self.step_s = daylight_s, step_s
        self.clear_s, self.cloud_s, self.cloud_min, self.cloud_max = clear_s, cloud_s, cloud_min, cloud_max
        self.name = f"solar:peak={format_quantity(peak_w, 'W')},seed={seed}"

    def _chunk(self, k):
        rng = np.random.default_rng([self.seed, k])
        n = int(math.ceil(self.day_len_steps()))
        times = np.minimum(np.arange(n + 1) * self.step_s, self.chunk_s)
        a, b = times[:-1], times[1:]
        # exact mean of sin(pi t / daylight) over each step, 0 at night
        w = math.pi / self.daylight_s
        lo, hi = np.minimum(a, self.daylight_s), np.minimum(b, self.daylight_s)
        sun = np.where(b > a, (np.cos(w * lo) - np.cos(w * hi)) / (w * (b - a)), 0.0)
        # cloud spells: alternate clear / cloudy, exponential lengths, starting in the stationary state
        factor = np.ones(n)
        t, cloudy = 0.0, rng.random() < self.cloud_s / (self.clear_s + self.cloud_s)
        while t < self.chunk_s:
            length = rng.exponential(self.cloud_s if cloudy else self.clear_s)
            if cloudy:   # a step is cloudy when it starts inside the spell
                through = rng.uniform(self.cloud_min, self.cloud_max)
                factor[np.searchsorted(a, t):np.searchsorted(a, t + length)] = through
            t += length
            cloudy = not cloudy
        return times, np.clip(self.peak_w * sun * factor, 0.0, None)

    def day_len_steps(self) -> float:
        return self.chunk_s / self.step_s


class Rf(Chunked):
    def __init__(self, on_w: float = 5e-3, seed: int = 0, mean_on_s: float = 0.1, mean_off_s: float = 0.4,
                 chunk_s: float = 60.0):
        super().__init__()
        if not (mean_on_s > 0 and mean_off_s > 0 and chunk_s > 0):
            raise HarvesterError(f"rf: the mean burst and gap lengths and the chunk must be > 0 (got on_s="
                                 f"{mean_on_s}, off_s={mean_off_s}, chunk={chunk_s}).")
        self.peak_w, self.seed, self.chunk_s = on_w, seed, chunk_s
        self.mean_on_s, self.mean_off_s = mean_on_s, mean_off_s
        self.name = f"rf:on={format_quantity(on_w, 'W')},seed={seed}"

    def _chunk(self, k):
        rng = np.random.default_rng([self.seed, k])
        on = rng.random() < self.mean_on_s / (self.mean_on_s + self.mean_off_s)
        times, powers, t = [0.0], [], 0.0
        while t < self.chunk_s:
            t = min(self.chunk_s, t + rng.exponential(self.mean_on_s if on else self.mean_off_s))
            times.append(t)
            powers.append(self.peak_w if on else 0.0)
            on = not on
        return np.asarray(times), np.asarray(powers)


def solar(start_s: float = 0.0, **kwargs) -> Trace:
    """A Solar trace; `start_s` > 0 makes t = 0 that many seconds after the first sunrise."""
    trace = Solar(**kwargs)
    return Shifted(trace, start_s, f"{trace.name},start={start_s:g}") if start_s else trace


def constant(power_w: float = 1e-3) -> Piecewise:
    return Piecewise([0.0], [power_w], name=f"constant:{format_quantity(power_w, 'W')}")


def read_csv(path: str | Path) -> Piecewise:
    """A trace file: a header `time_s,power_W`, then rows of numbers; times start at 0 and increase, powers
    are >= 0. Piecewise-constant (each row's power holds until the next row; the last one for ever)."""
    path = Path(path)
    if not path.is_file():
        raise HarvesterError(f"harvester trace {path} does not exist; give a CSV file with a header "
                             f"'time_s,power_W' and rows of (time in s, power in W).")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HarvesterError(f"harvester trace {path} cannot be read ({e}); give a text CSV file.") from None
    rows = [(n, r) for n, r in enumerate(csv.reader(lines), 1) if r and any(c.strip() for c in r)]
    if not rows or [c.strip().lower() for c in rows[0][1]] != ["time_s", "power_w"]:
        got = ",".join(rows[0][1]) if rows else "an empty file"
        raise HarvesterError(f"{path}: the first line must be the header 'time_s,power_W' (got {got!r}); "
                             f"add it above the rows.")
    if len(rows) < 2:
        raise HarvesterError(f"{path}: no rows after the header; add rows of time_s,power_W.")
    times, powers = [], []
    for n, row in rows[1:]:
        try:
            if len(row) != 2:
                raise ValueError
            t, p = float(row[0]), float(row[1])
        except ValueError:
            raise HarvesterError(f"{path}:{n}: {','.join(row)!r} is not two numbers time_s,power_W; "
                                 f"fix the row.") from None
        if not (math.isfinite(t) and math.isfinite(p)):
            raise HarvesterError(f"{path}:{n}: time and power must be finite numbers; fix the row.")
        if p < 0:
            raise HarvesterError(f"{path}:{n}: negative power {p} W; a harvester gives power >= 0.")
        if times and t <= times[-1]:
            raise HarvesterError(f"{path}:{n}: time {t} s does not increase (previous row: {times[-1]} s); "
                                 f"sort the rows and remove duplicate times.")
        if not times and t != 0:
            raise HarvesterError(f"{path}:{n}: the first row must be at time 0 (got {t} s); add a row at "
                                 f"0 or shift the times.")
        times.append(t)
        powers.append(p)
    return Piecewise(times, powers, name=f"csv:{path.name}")


_KINDS = {
    "constant": (constant, {"power": ("power_w", "W")}, "power"),
    "solar": (solar, {"peak": ("peak_w", "W"), "seed": ("seed", int), "start": ("start_s", "s"), "day": ("day_s", "s"),
                      "daylight": ("daylight_s", "s"), "step": ("step_s", "s"), "clear": ("clear_s", "s"),
                      "cloud": ("cloud_s", "s"), "cloud_min": ("cloud_min", float),
                      "cloud_max": ("cloud_max", float)}, "peak"),
    "rf": (Rf, {"on": ("on_w", "W"), "seed": ("seed", int), "on_s": ("mean_on_s", "s"),
                "off_s": ("mean_off_s", "s"), "chunk": ("chunk_s", "s")}, "on"),
}
SPEC_HELP = ("constant[:POWER] | solar[:peak=P,seed=N,start=S,day=S,daylight=S,step=S,clear=S,cloud=S] | "
             "rf[:on=P,seed=N,on_s=S,off_s=S] | FILE.csv")


def parse_harvester(spec: str) -> Trace:
    """A harvester from its CLI spec: `constant`, `constant:1mW`, `solar`, `solar:seed=2,peak=5mW`, `rf`,
    `rf:seed=3`, or the path of a CSV trace (see read_csv)."""
    spec = spec.strip()
    kind, _, args = spec.partition(":")
    if kind not in _KINDS:
        if spec.lower().endswith(".csv") or Path(spec).is_file():
            return read_csv(spec)
        raise HarvesterError(f"unknown harvester {spec!r}; use {SPEC_HELP}.")
    make, keys, positional = _KINDS[kind]
    kwargs = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = positional, item
        if key not in keys:
            raise HarvesterError(f"harvester {spec!r}: unknown parameter {key!r}; {kind} takes "
                                 f"{', '.join(keys)}.")
        name, kind_of = keys[key]
        if kind_of in (int, float):
            try:
                kwargs[name] = kind_of(value)
            except ValueError:
                what = "an integer" if kind_of is int else "a number"
                raise HarvesterError(f"harvester {spec!r}: {key}={value!r} is not {what}.") from None
        else:
            try:
                kwargs[name] = parse_quantity(value, kind_of, what=f"harvester {spec!r}: {key}")
            except TinyexitError as e:
                raise HarvesterError(str(e)) from None
    return make(**kwargs)
