"""No crash, no traceback, on any file: mutants of the conformance models through `generate` (issue 13.4).

The mutation engine (tests/codegen/_fuzz.py) walks the flatbuffer without tinyexit; benchmarks/fuzz_generate.py
runs the same verdicts on thousands of mutants. Here: a few hundred with a fixed seed, a sample of the generated
ones compiled with -Werror and compared with tflite_micro, and the crash containment checked on a file that
really crashes tflite_micro.
"""
import collections
import struct
import tempfile

import numpy as np
import pytest

from tests.codegen._fuzz import GENERATED, REFUSED, HostBuilds, Mutator, judge, message_problem, sites
from tests.conftest import conformance_model, require_program
from tinyexit.codegen import generate, read_model
from tinyexit.codegen.oracle import TflmCrashed, arena_figures
from tinyexit.errors import TinyexitError, UnsupportedModelError

SEEDS = ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite")


def _set(raw: bytes, what: str, value) -> bytes:
    """The seed with one field (a Site's `what`, e.g. 'tensor 0 buffer') set to `value`."""
    s = next(s for s in sites(raw) if s.what == what)
    b = bytearray(raw)
    struct.pack_into(s.fmt, b, s.pos, value)
    return bytes(b)


@pytest.fixture(scope="module")
def kws() -> bytes:
    return conformance_model(SEEDS[0]).read_bytes()


def test_mutator_changes_the_field_it_names(kws):
    # Independent check of the flatbuffer walk: the tflite package reads back the values the mutator wrote.
    import tflite

    raw = _set(_set(kws, "tensor 5 scale[0]", 0.5), "op 1 opcode_index", 2)
    m = tflite.Model.GetRootAsModel(raw, 0)
    sg = m.Subgraphs(0)
    assert sg.Tensors(5).Quantization().Scale(0) == 0.5
    assert sg.Operators(1).OpcodeIndex() == 2
    assert sg.Tensors(5).Name() == tflite.Model.GetRootAsModel(kws, 0).Subgraphs(0).Tensors(5).Name()


def test_tflm_crash_is_contained(kws, tmp_path, monkeypatch):
    """A buffer index past the end makes tflite_micro itself crash (SIGSEGV): the child dies, the caller gets one
    line naming tflite_micro, the signal and the model, and the child's temporary folder is gone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bad = tmp_path / "bad.tflite"
    nbuf = next(s for s in sites(kws) if s.what == "tensor 0 buffer").extra
    bad.write_bytes(_set(kws, "tensor 0 buffer", nbuf))
    with pytest.raises(TflmCrashed) as e:
        arena_figures({"bad": bad})
    msg = str(e.value)
    assert msg.startswith("tflite_micro crashed (SIG") and "'bad'" in msg and message_problem(msg) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tflite"]
    # tinyexit's reader refuses the same file, naming the tensor and the field, before TFLM ever runs.
    with pytest.raises(TinyexitError, match=rf"tensor 0 \('[^']*'\): buffer index {nbuf} is out of range"):
        read_model(bad)


def test_generate_turns_a_tflm_crash_into_one_line_and_writes_nothing(kws, tmp_path, monkeypatch):
    """generate on a file its checks accept but on which TFLM crashes (simulated by handing the real child a
    file TFLM crashes on): one line, no output folder, no hidden temporary folder."""
    import importlib

    gen = importlib.import_module("tinyexit.codegen.generate")   # the package's `generate` is the function

    crash = tmp_path / "crash.tflite"
    crash.write_bytes(_set(kws, "tensor 0 buffer", next(s for s in sites(kws) if s.what == "tensor 0 buffer").extra))
    monkeypatch.setattr(gen, "arena_figures", lambda paths: arena_figures({n: crash for n in paths}))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "lib" / "out"
    with pytest.raises(TflmCrashed) as e:
        generate(conformance_model(SEEDS[0]), out, measure=False)
    assert "tflite_micro crashed (SIGSEGV)" in str(e.value) and message_problem(str(e.value)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crash.tflite"]     # nor the child's temporary folder


@pytest.mark.parametrize("what,value,expect", [
    ("tensor 3 scale[0]", float("inf"), r"tensor 3 \('[^']*'\): quantization scale\[0\] is inf"),
    ("tensor 3 scale[0]", 0.0, r"tensor 3 \('[^']*'\): quantization scale\[0\] is 0.0"),
    ("tensor 3 zero_point[0]", 1 << 40, r"tensor 3 \('[^']*'\): quantization zero_point\[0\] is 1099511627776"),
    ("op 0 builtin_options_type", 2, r"op 0 \(CONV_2D\): its builtin options are DepthwiseConv2DOptions"),
    ("op 1 outputs[0]", None, r"op 1 \(DEPTHWISE_CONV_2D\): output 0 is tensor \d+ \('[^']*'\), which is written"),
    # found by the benchmark: TFLM writes 12 of the 528 output values, the rest is whatever the arena held
    ("tensor 34 shape[0]", 44, r"op 12 \(SOFTMAX\): output tensor 34 \('[^']*'\) has shape \[44, 12\]"),
    # found by the benchmark: a filter scale of 3e38 (finite, > 0) makes a multiplier whose left shift is 32 or
    # more, undefined in TFLM's C++; the generated code differed from tflite_micro's host build
    ("tensor 17 scale[0]", 3e38, r"op 0 \(CONV_2D\): requantization multiplier [0-9.e+]+ >= 2\^31"),
])
def test_field_refusals_name_the_index_and_the_field(kws, tmp_path, what, value, expect):
    if value is None:   # the op's output is its own input
        s = next(s for s in sites(kws) if s.what == "op 1 inputs[0]")
        value = struct.unpack_from(s.fmt, kws, s.pos)[0]
    p = tmp_path / "m.tflite"
    p.write_bytes(_set(kws, what, value))
    with pytest.raises(TinyexitError, match=expect) as e:
        generate(p, tmp_path / "out", measure=False)
    assert message_problem(str(e.value), p) is None
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.tflite"]


def test_opcode_resolved_as_tflm_resolves_it(tmp_path):
    """TFLM takes max(builtin_code, deprecated_builtin_code) (schema_utils.cc GetBuiltinCode); the `tflite`
    package's BuiltinCode() answers the deprecated field whenever builtin_code < 127. A CONV_2D code whose
    deprecated field says ADD (0) is CONV_2D for TFLM: generated and equal to tflite_micro. One whose builtin_code
    says TANH (28) over a deprecated CONV_2D (3) is TANH: refused as TANH."""
    import tflite

    require_program("gcc", "apt-get install -y gcc make")
    raw = conformance_model(SEEDS[1]).read_bytes()
    m = tflite.Model.GetRootAsModel(raw, 0)
    conv = next(c for c in range(m.OperatorCodesLength()) if m.OperatorCodes(c).DeprecatedBuiltinCode() == 3)
    mutant = _set(raw, f"operator code {conv} deprecated_builtin_code", 0)
    assert tflite.Model.GetRootAsModel(mutant, 0).OperatorCodes(conv).BuiltinCode() == 0   # the package: ADD
    v = judge(mutant, tmp_path / "w", np.random.default_rng(0), HostBuilds(tmp_path), n_inputs=3)
    assert v.verdict == "generated, equal", v
    p = tmp_path / "tanh.tflite"
    p.write_bytes(_set(raw, f"operator code {conv} builtin_code", 28))
    with pytest.raises(UnsupportedModelError, match=r"op 0 \(TANH\) is not supported"):
        read_model(p)


def test_a_garbage_tensor_name_is_printed_escaped_and_short(kws, tmp_path):
    s = next(s for s in sites(kws) if s.what == "tensor 3 name")
    b = bytearray(_set(kws, "tensor 3 scale[0]", -1.0))
    b[s.pos + 4:s.pos + 4 + s.extra] = bytes(range(256))[:s.extra] if s.extra <= 256 else bytes(s.extra)
    p = tmp_path / "m.tflite"
    p.write_bytes(bytes(b))
    with pytest.raises(TinyexitError) as e:
        read_model(p)
    msg = str(e.value)
    assert message_problem(msg, p) is None and "scale[0] is -1.0" in msg
    name = msg.split("tensor 3 (")[1].split("):")[0]
    assert len(name) <= 62 and name.isprintable()


def test_fuzz_campaign(tmp_path):
    """240 mutants (fixed seed) of both conformance models: every one is generated or refused properly, none is a
    defect; the first generated ones of each kernel variant are compiled with -Werror and equal tflite_micro."""
    require_program("gcc", "apt-get install -y gcc make")
    seeds = {n: conformance_model(n).read_bytes() for n in SEEDS}
    mutators = {n: Mutator(b) for n, b in seeds.items()}
    rng = np.random.default_rng(20261207)
    builds = HostBuilds(tmp_path)
    counts: collections.Counter = collections.Counter()
    defects = []
    compared = collections.Counter()
    for i in range(240):
        name = SEEDS[i % 2]
        desc, data = mutators[name].mutate(rng)
        kernels = ("reference", "cortex_m4")[(i // 2) % 2]
        full = compared[kernels] < 4
        v = judge(data, tmp_path / "mutant", rng, builds, kernels=kernels, compare=full, check_cli=i % 4 == 0)
        if v.verdict in GENERATED and full:
            compared[kernels] += 1
        counts[v.verdict] += 1
        if v.defect:
            defects.append(f"#{i} {name} [{desc}] {kernels}: {v.verdict}: {v.detail[-300:]}")
    assert not defects, "\n".join(defects)
    assert sum(counts[v] for v in REFUSED) >= 60, counts
    assert counts["generated, equal"] >= 8 and compared == {"reference": 4, "cortex_m4": 4}, (counts, compared)


def test_scales_tflm_aborts_on_are_refused(kws, tmp_path, monkeypatch):
    """A softmax beta so small that beta x input scale x 2^26 <= 1 makes TFLM's Prepare abort (SIGABRT, checked
    here in the child); tinyexit refuses the file first, naming the op and the quantity."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    p = tmp_path / "m.tflite"
    p.write_bytes(_set(kws, "op 12 option beta", 1e-45))
    with pytest.raises(TflmCrashed, match=r"\(SIGABRT\)"):
        arena_figures({"m": p})
    with pytest.raises(UnsupportedModelError, match=r"op 12 \(SOFTMAX\): beta x input scale x 2\^26 = .* is not above 1"):
        read_model(p)
