"""Where a hop's time goes on the device (`tinyexit stream --profile`, issue #15): the streaming firmware run
twice on a runner that counts instructions between two addresses (QEMU's plugin), once between the front end's
markers (tx_fe_begin/tx_fe_end in tx_stream.c: every push of samples, and the ring -> int8 features of a hop)
and once between the inference's (tx_bench_begin/tx_bench_end in tx_app.c). The windows come back in order and
are grouped into hops by the protocol itself: hop i pushes ceil(n_i / 320) chunks and then builds its features
once. Cycles are the plugin's Cortex-M4 estimate (TRM timings, zero wait states, no flash wait states); the
duty cycle is (front end + model) cycles over the board's clock x the hop. Reading the UART (tx_hal_getc) and
printing are left out: a board gets its audio by DMA from a microphone."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tinyexit import toolchain
from tinyexit.errors import TinyexitError
from tinyexit.stream_app import FIRST, SAMPLE_RATE, STEP, Hop, StreamFeeder, StreamSettings, num_hops


def windows_per_hop(n_hops: int, cfg: StreamSettings) -> list[int]:
    """Front-end windows of each hop: its pushes (receive() hands over at most one 320-sample step at a time)
    plus one for its features."""
    return [math.ceil((FIRST if i == 0 else cfg.hop) / STEP) + 1 for i in range(n_hops)]


def _windows(fw, runner, pcm, cfg, start: str, stop: str, timeout: float):
    window = (toolchain.symbol_address(fw.elf, start), toolchain.symbol_address(fw.elf, stop))
    res = runner.run(fw.elf, timeout=timeout, send=StreamFeeder(pcm, cfg), count_insns=True, window=window,
                     each_window=True)
    if res.insns is None:
        raise TinyexitError(f"{runner.name} returned no instruction counts for {fw.elf.name}")
    return np.asarray(res.insns.per_window, np.int64), np.asarray(res.insns.per_window_cycles, np.int64)


def profile(fw, runner, pcm: np.ndarray, cfg: StreamSettings, clock_hz: int, timeout: float = 900.0,
            hops: list[Hop] | None = None) -> dict:
    """Per hop: front-end and model instructions and estimated cycles, and the duty cycle at `clock_hz`. With the
    pre-model gate on, `hops` (the firmware's) say which hops ran the model (the others: 0 model instructions)."""
    runner.require("instruction_windows")
    n = num_hops(len(pcm), cfg)
    fe_i, fe_c = _windows(fw, runner, pcm, cfg, "tx_fe_begin", "tx_fe_end", timeout)
    per = windows_per_hop(n, cfg)
    if len(fe_i) != sum(per):
        raise TinyexitError(f"{fw.elf.name}: {len(fe_i)} front-end windows, the protocol gives {sum(per)} for {n} hops")
    bounds = np.cumsum([0, *per])
    fe_hop_i = np.array([fe_i[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])], np.int64)
    fe_hop_c = np.array([fe_c[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])], np.int64)
    w_i, w_c = _windows(fw, runner, pcm, cfg, "tx_bench_begin", "tx_bench_end", timeout)
    ran = np.array([h.gate != 0 for h in hops], bool) if hops is not None else np.ones(n, bool)
    if len(ran) != n or len(w_i) != ran.sum():
        raise TinyexitError(f"{fw.elf.name}: {len(w_i)} inference windows for {n} hops ({int(ran.sum())} not "
                            f"skipped by the gate)")
    m_i, m_c = np.zeros(n, np.int64), np.zeros(n, np.int64)
    m_i[ran], m_c[ran] = w_i, w_c
    budget = clock_hz * cfg.hop / FIRST          # cycles in one hop at the board's clock
    duty = (fe_hop_c + m_c) / budget
    steady = slice(1, None) if n > 1 else slice(None)   # hop 0 computes the whole first second's frames
    return {
        "hops": n, "hop_ms": cfg.hop_ms, "hop_samples": cfg.hop, "clock_hz": clock_hz,
        "frontend_instructions_per_hop": float(fe_hop_i[steady].mean()),
        "frontend_cycles_per_hop": float(fe_hop_c[steady].mean()),
        "frontend_cycles_first_hop": int(fe_hop_c[0]),
        "model_instructions_per_hop": float(m_i.mean()), "model_cycles_per_hop": float(m_c.mean()),
        "model_cycles_max": int(m_c.max()),
        "frontend_share_of_model": float(fe_hop_c[steady].mean() / m_c.mean()) if m_c.mean() else 0.0,
        "duty_cycle": float(duty[steady].mean()), "duty_cycle_max": float(duty[steady].max()),
        "per_hop": {"frontend_cycles": fe_hop_c.tolist(), "model_cycles": m_c.tolist(),
                    "frontend_instructions": fe_hop_i.tolist(), "model_instructions": m_i.tolist()},
        "note": "estimated Cortex-M4 cycles (zero wait states, no flash wait states); UART reads and printing "
                "left out",
    }


def plot(prof: dict, hops: list[Hop], classes: list[str], out: str | Path) -> Path:
    """Timeline PNG: per hop the front end's and the model's time at the clock (ms, stacked; colour = exit
    taken), the hop's length, and the detections."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyexit.io import save_figure
    ms = 1000.0 / prof["clock_hz"]
    fe = np.asarray(prof["per_hop"]["frontend_cycles"]) * ms
    model = np.asarray(prof["per_hop"]["model_cycles"]) * ms
    t = np.array([(FIRST + h.index * prof["hop_samples"]) / SAMPLE_RATE for h in hops])
    exits = np.array([h.exit for h in hops])
    width = prof["hop_ms"] / 1000.0 * 0.8
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar(t, fe, width=width, color="#999999", label="front end")
    for e in sorted(set(exits.tolist())):
        sel = exits == e
        ax.bar(t[sel], model[sel], width=width, bottom=fe[sel], label=f"model, exit {e}")
    for h, x in zip(hops, t):
        if h.det >= 0:
            ax.annotate(classes[h.det] if h.det < len(classes) else str(h.det), (x, (fe + model).max() * 1.05),
                        ha="center", fontsize=8, color="#b00")
    ax.set_xlabel("time in the stream (s, end of the hop's audio)")
    ax.set_ylabel(f"ms at {prof['clock_hz'] / 1e6:g} MHz")
    ax.set_title(f"per hop ({prof['hop_ms']:g} ms): duty cycle {100 * prof['duty_cycle']:.1f} % "
                 f"(max {100 * prof['duty_cycle_max']:.1f} %), front end {100 * prof['frontend_share_of_model']:.1f} % "
                 f"of the model; estimated cycles", fontsize=9)
    ax.set_ylim(0, (fe + model).max() * 1.15 if len(fe) else 1)
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, out, dpi=110)
    return Path(out)
