"""A mutation fuzzer for `tinyexit generate`, shared by tests/codegen/test_fuzz.py and benchmarks/fuzz_generate.py.

The mutation engine (`Mutator`) does not use tinyexit: it walks the flatbuffer itself (vtables, offsets,
vectors; field slots from TFLite's schema.fbs) to find the real fields of a seed model, then makes mutants
that damage the bytes (bit flips, truncations, overwritten offsets) or change one real field in place
(tensor type, shape, buffer index, name, scale, zero point, quantized dimension; op opcode index, inputs,
outputs, options type, option values; opcode builtin vs deprecated code; subgraph inputs/outputs; schema
version; weight bytes).

`judge` runs one mutant through the generate API in-process (TFLM runs in generate's child process) and
classifies it:
  generated, equal          the C compiles with -Wall -Wextra -Werror and equals tflite_micro on random inputs
  generated, tflm refuses   tflite_micro rejects the file we generated code for (noted, not a defect)
  generated, tflm crashes   tflite_micro crashes on it (noted, not a defect)
  refused                   TinyexitError: one printable line, <= 300 characters, no internal exception
                            named, exit status 2 and one line from the CLI, nothing left in the output folder
  refused, tflm crashed     generate's TFLM child crashed and generate said so in one line
  defect: ...               a traceback, a bad message, a leftover file, C that does not compile, or
                            outputs that differ from tflite_micro
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Flatbuffer walking (little endian; tables start with an soffset to their vtable)


def _u8(b, p):
    return b[p]


def _u16(b, p):
    return struct.unpack_from("<H", b, p)[0]


def _u32(b, p):
    return struct.unpack_from("<I", b, p)[0]


def _i32(b, p):
    return struct.unpack_from("<i", b, p)[0]


def field(b: bytes, table: int, slot: int) -> int | None:
    """Absolute position of a table's field (vtable slot 4, 6, ...), None when absent (a default)."""
    vt = table - _i32(b, table)
    if slot >= _u16(b, vt):
        return None
    off = _u16(b, vt + slot)
    return table + off if off else None


def deref(b: bytes, pos: int) -> int:
    return pos + _u32(b, pos)


def vector(b: bytes, table: int, slot: int) -> tuple[int, int] | None:
    """(first element position, length) of a vector field."""
    p = field(b, table, slot)
    if p is None:
        return None
    v = deref(b, p)
    return v + 4, _u32(b, v)


def tables(b: bytes, table: int, slot: int) -> list[int]:
    vec = vector(b, table, slot)
    if vec is None:
        return []
    start, n = vec
    return [deref(b, start + 4 * k) for k in range(n)]


# Field slots (schema.fbs field k -> slot 4 + 2k)
MODEL = dict(version=4, operator_codes=6, subgraphs=8, buffers=12)
SUBGRAPH = dict(tensors=4, inputs=6, outputs=8, operators=10)
TENSOR = dict(shape=4, type=6, buffer=8, name=10, quantization=12)
QUANT = dict(scale=8, zero_point=10, quantized_dimension=16)
OPERATOR = dict(opcode_index=4, inputs=6, outputs=8, builtin_options_type=10, builtin_options=12)
OPCODE = dict(deprecated_builtin_code=4, builtin_code=10)
BUFFER = dict(data=4)
# Scalar fields of the options tables the seeds use: options type -> {slot: (name, struct format)}
OPTION_FIELDS = {
    1: {4: ("padding", "b"), 6: ("stride_w", "i"), 8: ("stride_h", "i"), 10: ("fused_activation", "b"),
        12: ("dilation_w", "i"), 14: ("dilation_h", "i")},                                    # Conv2DOptions
    2: {4: ("padding", "b"), 6: ("stride_w", "i"), 8: ("stride_h", "i"), 10: ("depth_multiplier", "i"),
        12: ("fused_activation", "b"), 14: ("dilation_w", "i"), 16: ("dilation_h", "i")},     # DepthwiseConv2D
    5: {4: ("padding", "b"), 6: ("stride_w", "i"), 8: ("stride_h", "i"), 10: ("filter_width", "i"),
        12: ("filter_height", "i"), 14: ("fused_activation", "b")},                           # Pool2DOptions
    8: {4: ("fused_activation", "b"), 6: ("weights_format", "b"), 8: ("keep_num_dims", "b")},  # FullyConnected
    9: {4: ("beta", "f")},                                                                     # SoftmaxOptions
    11: {4: ("fused_activation", "b")},                                                        # AddOptions
}
OPTION_TYPES = (0, 1, 2, 5, 8, 9, 10, 11, 17, 22, 27, 32, 89, 200)
OP_CODES = (0, 1, 2, 3, 4, 9, 17, 22, 25, 28, 34, 40, 45, 114, 127, 150, 300)


@dataclass(frozen=True)
class Site:
    """One real field of the seed: where it is, its struct format, what it is."""
    kind: str           # e.g. "tensor.scale"
    pos: int
    fmt: str            # struct format of one element
    what: str           # e.g. "tensor 5 scale[0]"
    extra: int = 0      # a count the mutation uses (number of tensors, buffers, ...)


def sites(b: bytes) -> list[Site]:
    """The fields of the first subgraph of a .tflite, found by walking the flatbuffer."""
    out: list[Site] = []
    root = deref(b, 0)
    p = field(b, root, MODEL["version"])
    if p is not None:
        out.append(Site("model.version", p, "<I", "model version"))
    buffers = tables(b, root, MODEL["buffers"])
    nbuf = len(buffers)
    sg = tables(b, root, MODEL["subgraphs"])[0]
    tensors = tables(b, sg, SUBGRAPH["tensors"])
    nt = len(tensors)
    for key in ("inputs", "outputs"):
        vec = vector(b, sg, SUBGRAPH[key])
        if vec:
            out += [Site(f"subgraph.{key}", vec[0] + 4 * k, "<i", f"subgraph {key}[{k}]", nt) for k in range(vec[1])]
    for i, t in enumerate(tensors):
        vec = vector(b, t, TENSOR["shape"])
        if vec:
            out += [Site("tensor.shape", vec[0] + 4 * k, "<i", f"tensor {i} shape[{k}]") for k in range(vec[1])]
        for key, fmt in (("type", "<b"), ("buffer", "<I")):
            p = field(b, t, TENSOR[key])
            if p is not None:
                out.append(Site(f"tensor.{key}", p, fmt, f"tensor {i} {key}", nbuf))
        p = field(b, t, TENSOR["name"])
        if p is not None:
            s = deref(b, p)
            out.append(Site("tensor.name", s, "<I", f"tensor {i} name", _u32(b, s)))
        p = field(b, t, TENSOR["quantization"])
        if p is not None:
            q = deref(b, p)
            for key, fmt in (("scale", "<f"), ("zero_point", "<q")):
                vec = vector(b, q, QUANT[key])
                if vec:
                    size = struct.calcsize(fmt)
                    out += [Site(f"tensor.{key}", vec[0] + size * k, fmt, f"tensor {i} {key}[{k}]")
                            for k in range(vec[1])]
            p = field(b, q, QUANT["quantized_dimension"])
            if p is not None:
                out.append(Site("tensor.quantized_dimension", p, "<i", f"tensor {i} quantized_dimension"))
        bp = field(b, t, TENSOR["buffer"])
        if bp is not None and 0 < _u32(b, bp) < nbuf:
            vec = vector(b, buffers[_u32(b, bp)], BUFFER["data"])
            if vec and vec[1]:
                out.append(Site("buffer.data", vec[0], "<B", f"tensor {i} data", vec[1]))
    codes = tables(b, root, MODEL["operator_codes"])
    for c, oc in enumerate(codes):
        for key, fmt in (("deprecated_builtin_code", "<b"), ("builtin_code", "<i")):
            p = field(b, oc, OPCODE[key])
            if p is not None:
                out.append(Site(f"opcode.{key}", p, fmt, f"operator code {c} {key}"))
    for i, op in enumerate(tables(b, sg, SUBGRAPH["operators"])):
        p = field(b, op, OPERATOR["opcode_index"])
        if p is not None:
            out.append(Site("op.opcode_index", p, "<I", f"op {i} opcode_index", len(codes)))
        for key in ("inputs", "outputs"):
            vec = vector(b, op, OPERATOR[key])
            if vec:
                out += [Site(f"op.{key}", vec[0] + 4 * k, "<i", f"op {i} {key}[{k}]", nt) for k in range(vec[1])]
        p = field(b, op, OPERATOR["builtin_options_type"])
        if p is not None:
            out.append(Site("op.builtin_options_type", p, "<B", f"op {i} builtin_options_type"))
            otype = _u8(b, p)
            q = field(b, op, OPERATOR["builtin_options"])
            if q is not None:
                opt = deref(b, q)
                for slot, (name, fmt) in OPTION_FIELDS.get(otype, {}).items():
                    fp = field(b, opt, slot)
                    if fp is not None:
                        out.append(Site("op.option", fp, "<" + fmt, f"op {i} option {name}"))
    return out


def offset_positions(b: bytes) -> list[int]:
    """Positions of uoffset fields (references to tables, vectors, strings) and vtable soffsets."""
    root = deref(b, 0)
    pos = [0]
    seen = set()

    def walk_table(t: int, slots: tuple[int, ...]):
        if t in seen:
            return
        seen.add(t)
        pos.append(t)          # the soffset to the vtable
        for s in slots:
            p = field(b, t, s)
            if p is not None:
                pos.append(p)

    walk_table(root, (6, 8, 12))
    for sg in tables(b, root, MODEL["subgraphs"]):
        walk_table(sg, (4, 6, 8, 10))
        for t in tables(b, sg, SUBGRAPH["tensors"]):
            walk_table(t, (4, 10, 12))
        for op in tables(b, sg, SUBGRAPH["operators"]):
            walk_table(op, (6, 8, 12))
    for buf in tables(b, root, MODEL["buffers"]):
        walk_table(buf, (4,))
    return sorted(set(pos))


class Mutator:
    """Mutants of one seed model: `mutate(rng)` -> (description, bytes)."""

    KINDS = ("bitflip", "truncate", "offset", "field", "field", "field", "field", "weights", "opcode_pair")

    def __init__(self, seed: bytes):
        self.seed = bytes(seed)
        self.sites = sites(self.seed)
        self.by_kind: dict[str, list[Site]] = {}
        for s in self.sites:
            self.by_kind.setdefault(s.kind, []).append(s)
        self.offsets = offset_positions(self.seed)

    def mutate(self, rng: np.random.Generator) -> tuple[str, bytes]:
        kind = str(rng.choice(self.KINDS))
        b = bytearray(self.seed)
        if kind == "bitflip":
            flips = int(rng.integers(1, 5))
            where = []
            for _ in range(flips):
                p = int(rng.integers(0, len(b)))
                b[p] ^= 1 << int(rng.integers(0, 8))
                where.append(p)
            return f"bit flips at {where}", bytes(b)
        if kind == "truncate":
            n = int(rng.integers(0, len(b)))
            return f"truncated to {n} bytes", bytes(b[:n])
        if kind == "offset":
            p = int(rng.choice(self.offsets))
            old = _u32(b, p)
            new = int(rng.choice([0, 1, 4, len(b), len(b) - 4, 0x7FFFFFFF, 0xFFFFFFFF,
                                  (old + int(rng.integers(-64, 65))) & 0xFFFFFFFF, int(rng.integers(0, 1 << 32))]))
            struct.pack_into("<I", b, p, new)
            return f"offset at {p}: {old} -> {new}", bytes(b)
        if kind == "weights":
            s = rng.choice(self.by_kind["buffer.data"])
            k = int(rng.integers(1, 9))
            idx = rng.integers(0, s.extra, size=k)
            for j in idx:
                b[s.pos + int(j)] = int(rng.integers(0, 256))
            return f"{s.what}: {k} bytes changed", bytes(b)
        if kind == "opcode_pair":
            cands = self.by_kind.get("opcode.builtin_code", []) + self.by_kind.get("opcode.deprecated_builtin_code", [])
            s = cands[int(rng.integers(0, len(cands)))]
            v = int(rng.choice(OP_CODES))
            if s.fmt == "<b":
                v = max(-128, min(127, v))
            struct.pack_into(s.fmt, b, s.pos, v)
            return f"{s.what} = {v} (builtin and deprecated codes disagree)", bytes(b)
        kinds = sorted(self.by_kind)
        s = rng.choice(self.by_kind[str(rng.choice(kinds))])
        return self._field(s, b, rng)

    def _field(self, s: Site, b: bytearray, rng: np.random.Generator) -> tuple[str, bytes]:
        old = struct.unpack_from(s.fmt, b, s.pos)[0]
        r = lambda *vals: vals[int(rng.integers(0, len(vals)))]  # noqa: E731
        if s.kind == "tensor.name":
            n = s.extra
            if rng.random() < 0.5 and n:
                junk = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
                b[s.pos + 4:s.pos + 4 + n] = junk
                return f"{s.what}: {n} random bytes", bytes(b)
            new = int(r(n * 10, len(b) - s.pos - 4, 0xFFFFFFFF, 0))
            struct.pack_into("<I", b, s.pos, new)
            return f"{s.what}: length {n} -> {new}", bytes(b)
        if s.kind == "buffer.data":
            return self.mutate(rng)
        if s.fmt == "<f":
            new = r(0.0, -old, float("inf"), float("-inf"), float("nan"), 1e-45, 1e-30, 3e38, old * 2, old / 1024,
                    float(np.frombuffer(rng.integers(0, 256, 4, dtype=np.uint8).tobytes(), "<f4")[0]),
                    float(np.nextafter(np.float32(old), np.float32(np.inf))))
        elif s.kind == "tensor.zero_point":
            new = r(-129, 128, 127, -128, old + 1, old - 1, 1 << 31, -(1 << 63), (1 << 40), int(rng.integers(-300, 300)))
        elif s.kind == "tensor.type":
            new = r(0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 16, 17, 100, -1)
        elif s.kind == "tensor.shape":
            new = r(0, -1, 1, old + 1, old - 1, old * 2, 65536, 0x7FFFFFFF, int(rng.integers(1, 64)))
        elif s.kind == "tensor.buffer":
            new = r(0, s.extra - 1, s.extra, int(rng.integers(0, max(s.extra, 1))), 0xFFFFFFFF)
        elif s.kind == "tensor.quantized_dimension":
            new = r(-1, 1, 2, 3, 4, 100)
        elif s.kind in ("op.inputs", "op.outputs", "subgraph.inputs", "subgraph.outputs"):
            new = r(-1, -2, s.extra, int(rng.integers(0, s.extra)), int(rng.integers(0, s.extra)), old + 1, old - 1)
        elif s.kind == "op.opcode_index":
            new = r(s.extra, 0xFFFFFFFF, int(rng.integers(0, s.extra)), int(rng.integers(0, s.extra)))
        elif s.kind == "op.builtin_options_type":
            new = int(rng.choice(OPTION_TYPES))
        elif s.kind.startswith("opcode."):
            new = int(rng.choice(OP_CODES))
        elif s.kind == "model.version":
            new = r(0, 2, 4, 0xFFFFFFFF)
        elif s.kind == "op.option":
            new = r(0, -1, 1, 2, 3, 4, 6, 7, 65536, 0x7FFFFFFF, int(rng.integers(-5, 10)))
        else:
            new = int(rng.integers(-1000, 1000))
        new = _clamp(s.fmt, new)
        struct.pack_into(s.fmt, b, s.pos, new)
        return f"{s.what}: {old!r} -> {new!r}", bytes(b)


def _clamp(fmt: str, v):
    if fmt.endswith("f"):
        return float(v)
    bits = struct.calcsize(fmt) * 8
    if fmt[-1].islower():
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    v = int(v)
    return v if lo <= v <= hi else (v % (1 << bits)) - (0 if v % (1 << bits) <= hi else 1 << bits)


# ---------------------------------------------------------------------------------------------------------
# Verdicts (these use tinyexit)

GENERATED = ("generated, equal", "generated, tflm refuses", "generated, tflm crashes", "generated, not compared")
REFUSED = ("refused", "refused, tflm crashed")
INTERNAL = re.compile(r"\b(Traceback|[A-Z][A-Za-z]*(Error|Exception)|struct\.error|KeyError|StopIteration)\b")
MAX_MESSAGE = 300


@dataclass
class Verdict:
    verdict: str        # one of GENERATED, REFUSED, or "defect: <what>"
    detail: str = ""

    @property
    def defect(self) -> bool:
        return self.verdict.startswith("defect")


def message_problem(msg: str, path: Path | None = None) -> str | None:
    """Why a refusal message is not a proper one-line message, or None. The model's path counts as its file
    name (a user's folder can be long)."""
    if "\n" in msg or "\r" in msg:
        return "multi-line message"
    if len((msg.replace(str(path), path.name) if path else msg)) > MAX_MESSAGE:
        return "message longer than 300 characters"
    if not msg.isprintable():
        return "unprintable characters in the message"
    m = INTERNAL.search(msg.replace("TinyexitError", "").replace("UnsupportedModelError", ""))
    if m:
        return f"message names an internal exception ({m.group(0)})"
    return None


class HostBuilds:
    """Host executables of generated libraries, built once per distinct set of C sources."""

    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[str, Path | str] = {}

    def build(self, lib: Path) -> Path | str:
        """The tx_host of `lib` (a cached copy), or the compiler's message when it does not compile."""
        from tinyexit.conformance import build_host
        from tinyexit.errors import TinyexitError

        h = hashlib.sha256()
        for p in sorted(lib.iterdir()):
            if p.suffix in (".c", ".h"):
                h.update(p.name.encode() + p.read_bytes())
        key = h.hexdigest()[:20]
        if key not in self.cache:
            try:
                exe = build_host(lib)
                keep = self.root / f"tx_host_{key}"
                shutil.copy2(exe, keep)
                self.cache[key] = keep
            except TinyexitError as e:
                self.cache[key] = str(e)[-600:]
        return self.cache[key]


def judge(data: bytes, work: Path, rng: np.random.Generator, builds: HostBuilds, *, kernels: str = "reference",
          n_inputs: int = 4, check_cli: bool = True, compare: bool = True) -> Verdict:
    """Run one mutant through generate (in-process; TFLM in generate's child) and classify it. `compare=False`
    (quick runs) skips TFLM, the compiler and the comparison for a generated mutant ("generated, not compared")."""
    from tinyexit.cli import main
    from tinyexit.codegen import generate
    from tinyexit.conformance import run_host
    from tinyexit.codegen.oracle import TflmCrashed, TflmRefused, outputs
    from tinyexit.errors import TinyexitError

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    model = work / "m.tflite"
    model.write_bytes(data)
    out = work / "lib"
    try:
        report = generate({"m": model}, out, kernels=kernels, measure=False, compare_tflm=compare)
    except TinyexitError as e:
        msg = str(e)
        bad = message_problem(msg, model)
        left = sorted(p.name for p in work.iterdir() if p.name != "m.tflite")
        if bad:
            return Verdict(f"defect: {bad}", msg[:2000])
        if left:
            return Verdict("defect: leftover files", f"{left} after: {msg}")
        if check_cli:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["generate", str(model), "--out", str(out), "--kernels", kernels])
            lines = err.getvalue().strip().splitlines()
            if rc != 2 or len(lines) != 1:
                return Verdict("defect: CLI", f"exit {rc}, {len(lines)} lines: {err.getvalue()[:500]}")
            if sorted(p.name for p in work.iterdir()) != ["m.tflite"]:
                return Verdict("defect: leftover files", "after the CLI")
        return Verdict("refused, tflm crashed" if isinstance(e, TflmCrashed) else "refused", msg)
    except Exception as e:  # noqa: BLE001 - a traceback is the defect being looked for
        import traceback
        return Verdict("defect: traceback", "".join(traceback.format_exception(e))[-1500:])
    left = sorted(p.name for p in work.iterdir() if p.name not in ("m.tflite", "lib"))
    if left:
        return Verdict("defect: leftover files", str(left))
    if not compare:
        return Verdict("generated, not compared")
    exe = builds.build(out)
    if isinstance(exe, str):
        return Verdict("defect: does not compile", exe)
    m = report.models["m"]
    x = rng.integers(-128, 128, size=(n_inputs, m.input_size), dtype=np.int8)
    try:
        want = outputs(model, x)
    except TflmRefused as e:
        return Verdict("generated, tflm refuses", str(e)[:300])
    except TflmCrashed as e:
        return Verdict("generated, tflm crashes", str(e)[:300])
    got = run_host(exe, "m", x, m.output_size)
    if want.shape != got.shape or not np.array_equal(want.reshape(got.shape), got):
        return Verdict("defect: differs from tflite_micro",
                       f"shapes {want.shape} / {got.shape}, {int((want.reshape(-1) != got.reshape(-1)).sum()) if want.size == got.size else '-'} values differ")
    return Verdict("generated, equal")


def campaign(seeds: dict[str, bytes], count: int, seed: int, work: Path,
             progress: Callable[[int, str, str, Verdict], None] | None = None, **judge_kw) -> list[tuple]:
    """`count` mutants drawn round-robin from the seeds with one rng; returns (i, seed name, description,
    Verdict) per mutant. Kernel variants alternate (reference, cortex_m4) unless `kernels` is given."""
    rng = np.random.default_rng(seed)
    mutators = {n: Mutator(b) for n, b in seeds.items()}
    names = sorted(mutators)
    builds = HostBuilds(work)
    results = []
    for i in range(count):
        name = names[i % len(names)]
        desc, data = mutators[name].mutate(rng)
        kw = dict(judge_kw)
        kw.setdefault("kernels", ("reference", "cortex_m4")[(i // len(names)) % 2])
        v = judge(data, work / "mutant", rng, builds, **kw)
        results.append((i, name, desc, v))
        if progress:
            progress(i, name, desc, v)
    return results
