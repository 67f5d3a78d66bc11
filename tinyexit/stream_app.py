"""The streaming keyword-spotting app (issue #15, `tinyexit stream`): firmware_templates/stream/tx_stream.c on a
board (or emulated), its host build (gcc, stdin/stdout as the UART) and a Python mirror of the same pipeline,
compared hop by hop.

    read_pcm(wav) -> int16 [n]                        a 16-kHz mono int16 WAV, else a one-line error
    build_stream(run, board, out, cfg) -> Firmware    the firmware for a board
    build_stream_host(run, out, cfg) -> Path          the same C for the host
    mirror(run, pcm, cfg) -> list[Hop]                the pipeline in Python (see below)
    run_host(exe, pcm, cfg) -> list[Hop]              the host build's hops
    run_firmware(fw, runner, pcm, cfg) -> list[Hop]   the firmware's hops (runner with `send`), the audio sent
                                                      chunk by chunk as the firmware asks (StreamFeeder)
    summary(run, hops, pcm, cfg, truth=None, host=None) -> dict     the report (`--json`)

The pipeline, every hop (hop 0 after the first 16000 samples, then every `hop_ms`): the C front end with a
fixed level (samples divided by LEVEL, the same constant here and in the firmware) -> the ring's 49 frames ->
int8 with the model's input quantization -> the pre-model gate (tinyexit.stream_gate; off unless `cfg.gate`: a
skipped hop runs no model and smooths as silence) -> the early-exit model with the run's policy -> the int8
posteriors of the exit taken added over the last `smooth` hops -> detection (tx_stream.c's header). The mirror gets the int8
features from the front end's host build (tinyexit.frontend: with a fixed level a frame depends only on its 480
samples, so the ring at a hop is the 49 frames of the 16000 samples that end with its newest frame), the exit
outputs from tflite_micro (Run.oracle()) and the exits from the Python policy (bench.oracle_decisions);
`replay` is everything after the front end, so a benchmark or the gate's calibration can re-run it with other
gates and policies on the same features and exit outputs.

The level (`stream_level`) is the run's: a run trained with a fixed level (a recipe's `front_end.level: fixed:N`,
model.json's data recipe, tinyexit.data.level) streams with that N, so training, the firmware and the mirror
divide by the same number. A run trained with MLPerf's per-clip division (the default recipe) streams with
LEVEL = 8192 (-12 dBFS), a level its model never saw: the stream recordings put each word's peak at -20..-6
dBFS, and 8192 is about their middle (a word at -12 dBFS looks as MLPerf's per-clip maximum would make it).
A run trained with a running peak is refused (the firmware implements the fixed level).
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np

from tinyexit import stream_gate, toolchain
from tinyexit.data.features import FRAME_LENGTH, FRAME_STEP, NUM_FRAMES
from tinyexit.data.level import Level, run_level
from tinyexit.data.speech_commands import SAMPLE_RATE, wav_frames
from tinyexit.errors import TinyexitError
from tinyexit.io import write_text
from tinyexit.run import as_run
from tinyexit.stream_gate import Gate
from tinyexit.targets import Dialog

FIRST = SAMPLE_RATE                        # hop 0 needs one clip of audio
FRAME, STEP, FRAMES = FRAME_LENGTH, FRAME_STEP, NUM_FRAMES
LEVEL = 8192
TEMPLATES = "stream"
NEED_RE = re.compile(r"^TX NEED i=(\d+) n=(\d+)")
HOP_RE = re.compile(r"^TX H i=(\d+) fh=([0-9a-f]{8}) exit=(-?\d+) class=(\d+) det=(-?\d+) macs=(\d+) ticks=(\d+)"
                    r"(?: gate=(-?\d+) floor=(-?\d+))?")


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    hop_ms: float = 250.0
    smooth: int = 3
    threshold: float = 0.7
    refractory_s: float = 1.0
    level: int | None = None        # the front end's fixed level; None: the run's (stream_level)
    gate: Gate = Gate()             # the pre-model gate (tinyexit.stream_gate); off: the model runs every hop

    @property
    def hop(self) -> int:
        return int(round(self.hop_ms * SAMPLE_RATE / 1000))

    @property
    def refractory(self) -> int:
        return int(math.ceil(self.refractory_s * 1000 / self.hop_ms - 1e-9))

    def check(self) -> "StreamSettings":
        if not (self.hop_ms > 0 and STEP <= self.hop <= FIRST):
            raise TinyexitError(f"--hop-ms {self.hop_ms}: use a hop of 20 to 1000 ms")
        if (self.smooth < 1 or not 0 < self.threshold <= 1 or self.refractory_s < 0
                or not (self.level is None or 0 < self.level < 32768)):
            raise TinyexitError("stream settings out of range: smooth >= 1, threshold in (0, 1], refractory >= 0, "
                                "level in 1..32767")
        self.gate.check()
        return self


@dataclasses.dataclass(frozen=True)
class Hop:
    index: int
    fhash: int
    exit: int
    cls: int
    det: int
    macs: int
    ticks: int = 0     # the firmware's ticks of the inference (the board's tick unit; 0 on the host)
    gate: int = -1     # the pre-model gate: -1 off, 0 skipped (exit -1, no inference), 1 open
    floor: int = 0     # the gate's Q8 noise floor after the hop (0 with the gate off)

    def key(self) -> tuple:
        return (self.index, self.fhash, self.exit, self.cls, self.det, self.gate, self.floor)


def read_pcm(wav: str | Path) -> np.ndarray:
    """The samples of a 16-kHz mono int16 WAV (int16); a one-line TinyexitError for anything else."""
    wav = Path(wav)
    if not wav.is_file():
        raise TinyexitError(f"{wav} does not exist; give a WAV file (e.g. one made by `tinyexit data kws-stream`)")
    rate, ch, width, raw = wav_frames(wav, "give a 16-kHz mono 16-bit PCM WAV")
    if (rate, ch, width) != (SAMPLE_RATE, 1, 2):
        raise TinyexitError(f"{wav}: {rate} Hz, {ch} channel(s), {8 * width}-bit; the stream needs 16000 Hz mono "
                            f"16-bit PCM (convert: sox IN -r 16000 -c 1 -b 16 OUT.wav)")
    x = np.frombuffer(raw, "<i2").astype(np.int16)
    if len(x) < FIRST:
        raise TinyexitError(f"{wav} is {len(x) / SAMPLE_RATE:.2f} s long; the stream needs at least 1 s of audio")
    return x


def num_hops(n: int, cfg: StreamSettings) -> int:
    return 0 if n < FIRST else 1 + (n - FIRST) // cfg.hop


def stream_level(run_dir, cfg: StreamSettings) -> int:
    """The fixed level the stream divides samples by (module doc): the run's `fixed:N`; for a per-clip run,
    `cfg.level` or LEVEL; a one-line TinyexitError for a level the firmware cannot compute or that contradicts the
    run's."""
    run = as_run(run_dir)
    lv = run_level(run)
    if lv.kind == "fixed":
        if cfg.level is not None and cfg.level != lv.value:
            raise TinyexitError(f"{run.path} was trained with the front-end level {lv}; the stream must divide by "
                                f"{lv.value}, not {cfg.level} (leave the level unset to use the run's)")
        return lv.value
    if lv.streams:
        raise TinyexitError(f"{run.path} was trained with the running-peak level {lv}; the stream firmware divides "
                            f"by a fixed level only: retrain with front_end.level: fixed:N "
                            f"(models/kws-dscnn-stream.yaml)")
    return LEVEL if cfg.level is None else int(cfg.level)


def _stream_context(run, cfg: StreamSettings) -> dict:
    level = stream_level(run, cfg)
    man = run.manifest()
    classes = list(man.get("classes") or [])
    seg0 = man["segments"][0]
    if list(seg0["input_shape"]) != [FRAMES, 10, 1] or not classes:
        raise TinyexitError(f"{run.path} is not a keyword-spotting run (input {seg0['input_shape']}, classes "
                            f"{classes or 'none'}); the stream needs a model of 49x10x1 MFCC inputs")
    outs = {(float(e["output"]["scale"]), int(e["output"]["zero_point"])) for e in man["exits"]}
    if len(outs) != 1:
        raise TinyexitError(f"{run.path}: the exits' outputs are quantized differently ({sorted(outs)}); the "
                            f"stream adds int8 posteriors of different exits and needs one quantization")
    scale, zp = outs.pop()
    thr_q = int(math.ceil(cfg.threshold / scale - 1e-9)) + zp   # p >= threshold <=> q >= thr_q
    return dict(hop=cfg.hop, hop_ms=cfg.hop_ms, level=level, smooth=cfg.smooth, threshold=cfg.threshold,
                threshold_q=min(thr_q, 127), refractory=cfg.refractory, classes=classes,
                keywords=[int(not c.startswith("_")) for c in classes],
                exit_macs=[int(e["macs_to_exit"]) for e in man["exits"]],
                input_scale=repr(float(np.float32(seg0["input"]["scale"]))), input_zp=int(seg0["input"]["zero_point"]),
                source=run.name, out_q={"scale": scale, "zero_point": zp},
                **stream_gate.context(cfg.gate, classes, {"scale": scale, "zero_point": zp}))


def render_stream(run_dir, out: str | Path, cfg: StreamSettings,
                  default_kernels: str = "reference") -> tuple[list[Path], list[Path], dict]:
    """The app's sources in `out` (tx_stream.c, its config, the bench app it reuses, the front end) and the
    library's -> (sources, include dirs, context)."""
    from tinyexit import frontend
    from tinyexit.build import APP_SOURCES, model_library, pipeline_from_run, render_app
    run = as_run(run_dir)
    ctx = _stream_context(run, cfg.check())
    pipe, _, _ = pipeline_from_run(run)
    out = Path(out)
    render_app(pipe, [], [], out, source="none: the stream app reads the UART")
    write_text(out / "tx_stream.c", (toolchain.TEMPLATES / TEMPLATES / "tx_stream.c").read_text())
    toolchain.render_to(f"{TEMPLATES}/tx_stream_config.h.j2", out / "tx_stream_config.h", **ctx)
    fe = [p for p in frontend.render_sources(out) if p.suffix == ".c"]
    lib = model_library(run, default_kernels=default_kernels)   # an existing library keeps its kernels
    # tx_stream.c includes tx_app.c (its main renamed); the rest of the app as it is
    srcs = [out / "tx_stream.c", *[out / s for s in APP_SOURCES if s != "tx_app.c"], *fe]
    return srcs, [out, lib], ctx


def build_stream(run_dir, board, out: str | Path, cfg: StreamSettings, emulate: bool = False):
    """The stream firmware of a run for `board` (build.build_firmware: sizes checked, size.json). A library
    generated here gets the board's kernels (as build.build_run)."""
    from tinyexit.build import build_firmware, library_memory, library_sources, model_library
    from tinyexit.boards import load_board
    board = load_board(board, emulate=emulate) if isinstance(board, str) else board
    out = Path(out)
    srcs, incs, _ = render_stream(run_dir, out / "app", cfg, default_kernels=board.kernels)
    lib = model_library(as_run(run_dir))
    lib_srcs = library_sources(lib)
    return build_firmware(board, srcs + lib_srcs, out, include_dirs=incs, name="stream", emulate=emulate,
                          defines={"TX_APP_NO_EXIT": 0, "TX_APP_SERIAL_INPUTS": 0},
                          weight_sources=[s for s in lib_srcs if s.name.startswith("tx_model_")], **library_memory(lib))


def build_stream_host(run_dir, out: str | Path, cfg: StreamSettings) -> Path:
    """The same C for the host (gcc, the host HAL: stdin/stdout as the UART)."""
    from tinyexit.build import library_sources, model_library
    out = Path(out)
    srcs, incs, _ = render_stream(run_dir, out / "app", cfg)
    host = toolchain.TEMPLATES / "boards" / "host"
    lib_srcs = library_sources(model_library(as_run(run_dir)))
    return toolchain.compile_host([*srcs, *lib_srcs, host / "tx_hal_host.c"], out / "stream_host",
                                  defines={"TX_APP_NO_EXIT": 0, "TX_APP_SERIAL_INPUTS": 0},
                                  include_dirs=[host, toolchain.TEMPLATES / "boards", *incs], libs=("m",),
                                  what="stream host build")


def uart_bytes(pcm: np.ndarray, cfg: StreamSettings) -> bytes:
    """What the host sends: the number of hops (4 bytes, little endian), then the samples the hops take."""
    h = num_hops(len(pcm), cfg)
    used = FIRST + (h - 1) * cfg.hop if h else 0
    return h.to_bytes(4, "little") + np.asarray(pcm[:used], "<i2").tobytes()


def parse_hops(text: str, what: str) -> list[Hop]:
    hops = [Hop(int(m[1]), int(m[2], 16), int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(m[7]),
                int(m[8]) if m[8] is not None else -1, int(m[9]) if m[9] is not None else 0)
            for m in (HOP_RE.match(ln.strip()) for ln in text.splitlines()) if m]
    if "TX END" not in text:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise TinyexitError(f"{what} did not finish the stream ({len(hops)} hops printed); last output: {tail}")
    return hops


def run_host(exe: str | Path, pcm: np.ndarray, cfg: StreamSettings, timeout: float = 600.0) -> list[Hop]:
    import subprocess
    p = subprocess.run([str(exe)], input=uart_bytes(pcm, cfg), capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise TinyexitError(f"the stream's host build ended with status {p.returncode}: {p.stderr.decode()[-300:]}")
    return parse_hops(p.stdout.decode("utf-8", "replace"), "the stream's host build")


class StreamFeeder(Dialog):
    """The host side of tx_stream.c's flow control (a Dialog for any runner with `send`): the number of hops
    after the READY line, then for each `TX NEED i=<i> n=<n>` exactly the n samples of hop i, never more, so a
    board needs no buffer beyond one chunk. With `realtime`, a chunk goes out no earlier than a microphone
    started at the first request would have recorded its last sample; `lag_s` is how far the firmware's
    requests fell behind that clock at most (0 when it keeps up)."""

    def __init__(self, pcm: np.ndarray, cfg: StreamSettings, realtime: bool = False, clock=None, sleep=None):
        import time
        self.pcm, self.cfg, self.realtime = np.asarray(pcm, "<i2"), cfg, realtime
        self.hops = num_hops(len(pcm), cfg)
        self.clock, self.sleep = clock or time.monotonic, sleep or time.sleep
        self.next = 0           # the hop the firmware must ask for next
        self.sent = 0           # samples sent
        self.t0: float | None = None
        self.lag_s = 0.0
        self._line = b""

    def feed(self, data: bytes) -> bytes:
        out = b""
        self._line += data
        while b"\n" in self._line:
            line, self._line = self._line.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("TX STREAM READY"):
                out += self.hops.to_bytes(4, "little")
            elif (m := NEED_RE.match(text)):
                out += self._chunk(int(m[1]), int(m[2]))
        return out

    def _chunk(self, i: int, n: int) -> bytes:
        want = FIRST if self.next == 0 else self.cfg.hop
        if i != self.next or n != want or i >= self.hops:
            raise TinyexitError(f"the firmware asked for hop {i} ({n} samples) but the host expected hop {self.next} "
                                f"({want} samples) of {self.hops}: the firmware was built with other stream settings; "
                                f"rebuild it with the same --hop-ms")
        if self.realtime:
            now = self.clock()
            self.t0 = now if self.t0 is None else self.t0
            ready = self.t0 + (self.sent + n) / SAMPLE_RATE   # when a microphone has the chunk's last sample
            if i == 0:
                self.t0 -= n / SAMPLE_RATE                     # the first second was recorded before hop 0
            elif now < ready:
                self.sleep(ready - now)
            else:
                self.lag_s = max(self.lag_s, now - ready)
        chunk = self.pcm[self.sent:self.sent + n].tobytes()
        self.sent += n
        self.next += 1
        return chunk


def run_firmware(fw, runner, pcm: np.ndarray, cfg: StreamSettings, timeout: float = 900.0,
                 realtime: bool = False) -> tuple[list[Hop], object, StreamFeeder]:
    """The firmware's hops, the run result and the feeder that sent its audio chunk by chunk as it asked
    (`realtime`: paced as a microphone delivers it; the feeder's lag_s)."""
    feeder = StreamFeeder(pcm, cfg, realtime=realtime)
    res = runner.run(fw.elf, timeout=timeout, send=feeder)
    hops = parse_hops(res.output, f"{fw.elf.name} with {runner.name}")
    if feeder.next != feeder.hops:
        raise TinyexitError(f"{fw.elf.name} asked for {feeder.next} of {feeder.hops} hops of audio")
    return hops, res, feeder


def hop_windows(pcm: np.ndarray, cfg: StreamSettings) -> np.ndarray:
    """int16 [H, 16000]: per hop, the samples of the 49 frames in the firmware's ring (the newest frame is
    the last complete one: frames start every 320 samples from the stream's first), then 160 zeros (no frame
    reads them)."""
    out = []
    for i in range(num_hops(len(pcm), cfg)):
        n = FIRST + i * cfg.hop
        f = (n - FRAME) // STEP + 1
        start = STEP * (f - FRAMES)
        span = STEP * (FRAMES - 1) + FRAME                # 15840: the 49 frames; the driver pads zeros to 16000
        out.append(np.concatenate([pcm[start:start + span], np.zeros(FIRST - span, np.int16)]))
    return np.stack(out).astype(np.int16) if out else np.zeros((0, FIRST), np.int16)


def fnv1a(x: np.ndarray) -> int:
    h = 2166136261
    for b in np.asarray(x, np.int8).reshape(-1).view(np.uint8).tolist():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def detect_q(posteriors: np.ndarray, keywords, smooth: int, threshold_q: int, refractory: int) -> list[int]:
    """tx_stream.c's rule on int8 posteriors [H, classes] -> per hop the detected class or -1."""
    post = np.asarray(posteriors, np.int64)
    out, last = [], -refractory
    for i in range(len(post)):
        lo = max(0, i + 1 - smooth)
        sums = post[lo:i + 1].sum(axis=0)
        k = int(np.argmax(sums))
        if keywords[k] and sums[k] >= threshold_q * (i + 1 - lo) and i - last >= refractory:
            out.append(k)
            last = i
        else:
            out.append(-1)
    return out


def features(run_dir, pcm: np.ndarray, cfg: StreamSettings, work: str | Path) -> np.ndarray:
    """int8 [H, 490]: the model's input at every hop (the C front end's host build over each hop's ring)."""
    from tinyexit import frontend
    run = as_run(run_dir)
    ctx = _stream_context(run, cfg.check())
    exe = frontend.build_host(Path(work) / "frontend")
    _, x_q = frontend.run_host(exe, hop_windows(pcm, cfg), mode="push",
                               level=Level("fixed", ctx["level"]).driver_arg(), chunk=STEP,
                               qparams=run.manifest()["segments"][0]["input"])
    return x_q.reshape(len(x_q), -1)


def exit_outputs(run_dir, x_q: np.ndarray, policy: dict | None = None) -> tuple[list[np.ndarray], list | None]:
    """tflite_micro's int8 outputs of every exit for the inputs x_q [N, 490] (and the confidence models' for the
    confidence policy): what replay() needs for the hops the model runs on."""
    from tinyexit.bench import oracle_confidence, oracle_outputs
    run = as_run(run_dir)
    policy = run.policy() if policy is None else policy
    x = np.asarray(x_q, np.int8).reshape(len(x_q), FRAMES, 10, 1)
    if not len(x):                  # the gate skipped every hop: nothing to run
        k = len(run.manifest()["classes"])
        return [np.zeros((0, k), np.int8) for _ in run.manifest()["exits"]], None
    if policy.get("policy") == "confidence":
        return oracle_confidence(run.path, x, policy)
    return oracle_outputs(run, x), None


def replay(run_dir, x_q: np.ndarray, outs: list[np.ndarray], cfg: StreamSettings, conf=None,
           policy: dict | None = None, fhash: list[int] | None = None,
           is_open: np.ndarray | None = None) -> list[Hop]:
    """The pipeline after the front end, in Python: the gate (stream_gate.decide) on the int8 features x_q
    [H, 490]; on the open hops, in order, the policy (the run's, or `policy`) on `outs`, the exits' outputs of
    THOSE hops only (a temporal policy's state sees the inferred hops only, as in tx_stream.c); a skipped hop adds
    stream_gate.skipped_posterior to the smoothing; then the detection rule. `fhash`: fnv1a of each x_q row, if
    known. `is_open`: given gate decisions instead of cfg.gate's (an analysis, e.g. the ground truth's words; the
    gate must be on; the floor is then 0)."""
    from tinyexit.bench import oracle_decisions
    run = as_run(run_dir)
    ctx = _stream_context(run, cfg.check())
    man = run.manifest()
    policy = run.policy() if policy is None else policy
    n = len(x_q)
    if is_open is None:
        is_open, floor = stream_gate.decide(x_q, cfg.gate)
    elif not cfg.gate.on or len(is_open) != n:
        raise TinyexitError("replay: given gate decisions need a gate that is on and one decision per hop")
    else:
        is_open, floor = np.asarray(is_open, bool), np.zeros(n, np.int64)
    idx = np.flatnonzero(is_open)
    if any(len(o) != len(idx) for o in outs):
        raise TinyexitError(f"replay: {len(idx)} hops run the model but the exits' outputs cover "
                            f"{[len(o) for o in outs]}")
    post = np.zeros((n, len(ctx["classes"])), np.int64)
    exit_, cls, macs = np.full(n, -1), np.full(n, ctx["gate_silence"]), np.zeros(n, np.int64)
    post[~is_open] = ctx["gate_posterior"]
    if len(idx):
        res = oracle_decisions(outs, policy, man, conf)
        for j, i in enumerate(idx):
            e = int(res.exit_index[j])
            post[i], exit_[i], cls[i], macs[i] = outs[e][j], e, int(res.decision[j]), ctx["exit_macs"][e]
    dets = detect_q(post, ctx["keywords"], cfg.smooth, ctx["threshold_q"], cfg.refractory)
    flag = is_open.astype(int) if cfg.gate.on else np.full(n, -1)
    fhash = [fnv1a(x) for x in x_q] if fhash is None else fhash
    return [Hop(i, fhash[i], int(exit_[i]), int(cls[i]), dets[i], int(macs[i]), 0, int(flag[i]),
                int(floor[i])) for i in range(n)]


def mirror(run_dir, pcm: np.ndarray, cfg: StreamSettings, work: str | Path) -> list[Hop]:
    """The pipeline in Python (module doc): front end host build -> gate -> tflite_micro on the open hops ->
    Python policy -> detection."""
    run = as_run(run_dir)
    x_q = features(run, pcm, cfg, work)
    is_open, _ = stream_gate.decide(x_q, cfg.gate)
    outs, conf = exit_outputs(run, x_q[is_open])
    return replay(run, x_q, outs, cfg, conf)


def equal_hops(a: list[Hop], b: list[Hop]) -> int:
    """Hops on which both agree on features, exit, class and detection (a shorter list: the rest disagree)."""
    return sum(x.key() == y.key() for x, y in zip(a, b))


def summary(run_dir, hops: list[Hop], pcm: np.ndarray, cfg: StreamSettings, *, host: list[Hop] | None = None,
            truth_csv: str | Path | None = None) -> dict:
    """The report of a stream (`tinyexit stream --json`)."""
    run = as_run(run_dir)
    man = run.manifest()
    classes = list(man["classes"])
    names = [e["name"] for e in man["exits"]]
    times = [(FIRST + h.index * cfg.hop) / SAMPLE_RATE for h in hops]
    dets = [{"time_s": t, "class": classes[h.det], "exit": names[h.exit] if h.exit >= 0 else "skipped", "macs": h.macs}
            for t, h in zip(times, hops) if h.det >= 0]
    per_s = SAMPLE_RATE / cfg.hop
    doc = {"run": str(run.path), "hops": len(hops), "hop_ms": cfg.hop_ms, "level": stream_level(run, cfg),
           "level_trained": str(run_level(run)), "smooth": cfg.smooth,
           "threshold": cfg.threshold, "refractory_s": cfg.refractory_s, "audio_s": len(pcm) / SAMPLE_RATE,
           "detections": dets,
           "exits": {n: sum(h.exit == k for h in hops) for k, n in enumerate(names)},
           "gate": {**cfg.gate.as_dict(), "skipped": sum(h.gate == 0 for h in hops)},
           "macs_per_second": float(np.mean([h.macs for h in hops]) * per_s) if hops else 0.0,
           "macs_per_second_no_exit": float(man["no_exit_macs"]) * per_s,
           "ticks_per_hop": {n: float(np.mean([h.ticks for h in hops if h.exit == k]))
                             for k, n in enumerate(names) if any(h.exit == k for h in hops)},
           "false_rejects": None, "false_accepts_per_hour": None}
    if host is not None:
        doc["hops_equal_host"] = equal_hops(hops, host)
        doc["host_hops"] = len(host)
    if truth_csv is not None and Path(truth_csv).is_file():
        from tinyexit.data.stream_score import read_truth, score
        s = score([(d["time_s"], d["class"]) for d in dets], read_truth(truth_csv), len(pcm) / SAMPLE_RATE)
        doc["false_rejects"] = s.false_rejects
        doc["false_accepts_per_hour"] = s.false_accepts_per_hour
        doc["score"] = s.as_dict()
    return doc
