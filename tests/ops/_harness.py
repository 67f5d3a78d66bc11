"""Per-kernel sweep harness: small Keras models -> int8 .tflite (TFLiteConverter, representative data,
int8 in/out) -> one generated library per op file -> host build -> compare with tflite_micro."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyexit.quantize import _quiet, convert_int8  # noqa: F401  (_quiet: the tests' own conversions)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable           # (keras module) -> keras.Model
    input_shape: tuple
    per_channel: bool = True
    patch: Callable | None = None     # bytes -> bytes, applied to the converted model


def random_window(r) -> tuple:
    """A random input shape (h, w, c), kernel (kh, kw), strides (sh, sw) and padding drawn from `r` (a
    random.Random) for the conv-like random sweeps; "valid" only where the kernel fits the input."""
    h, w, c = r.randint(1, 9), r.randint(1, 9), r.randint(1, 6)
    kh, kw = r.randint(1, 5), r.randint(1, 5)
    sh, sw = r.randint(1, 3), r.randint(1, 3)
    pad = r.choice(["same", "valid"])
    if pad == "valid" and (kh > h or kw > w):
        pad = "same"
    return (h, w, c), (kh, kw), (sh, sw), pad


def set_quantization(model: bytes, tensor: int, scale: float, zero_point: int) -> bytes:
    """Overwrite tensor `tensor`'s per-tensor scale and zero point in place in the flatbuffer."""
    import tflite

    buf = bytearray(model)
    q = tflite.Model.GetRootAsModel(bytes(buf), 0).Subgraphs(0).Tensors(tensor).Quantization()
    s_pos, z_pos = q._tab.Vector(q._tab.Offset(8)), q._tab.Vector(q._tab.Offset(10))
    buf[s_pos:s_pos + 4] = np.float32(scale).tobytes()
    buf[z_pos:z_pos + 8] = np.int64(zero_point).tobytes()
    return bytes(buf)


def output_tensor(model: bytes) -> int:
    import tflite

    return int(tflite.Model.GetRootAsModel(model, 0).Subgraphs(0).Outputs(0))


def copy_quantization(model: bytes, src_tensor: int, dst_tensor: int) -> bytes:
    """Overwrite the (per-tensor) scale and zero point of tensor `dst_tensor` with those of `src_tensor`, in
    place in the flatbuffer: reaches quantization settings the converter never picks by itself."""
    import tflite

    buf = bytearray(model)
    sg = tflite.Model.GetRootAsModel(bytes(buf), 0).Subgraphs(0)

    def slots(t):
        q = sg.Tensors(t).Quantization()
        return q._tab.Vector(q._tab.Offset(8)), q._tab.Vector(q._tab.Offset(10))  # scale (f32), zero_point (i64)
    (s_scale, s_zp), (d_scale, d_zp) = slots(src_tensor), slots(dst_tensor)
    buf[d_scale:d_scale + 4] = buf[s_scale:s_scale + 4]
    buf[d_zp:d_zp + 8] = buf[s_zp:s_zp + 8]
    return bytes(buf)


def convert(case: Case, seed: int = 0) -> bytes:
    """The case's Keras model (biases made non-zero) converted to int8 by tinyexit.quantize.convert_int8."""
    import keras

    keras.utils.set_random_seed(seed)
    model = case.build(keras)
    rng = np.random.default_rng(seed)
    rep = rng.normal(0, 1, size=(16, *case.input_shape)).astype(np.float32)
    # Give biases non-zero values so that the bias path is exercised.
    for layer in model.layers:
        ws = layer.get_weights()
        if ws and getattr(layer, "use_bias", False):
            ws[-1] = rng.normal(0, 0.3, size=ws[-1].shape).astype(np.float32)
            layer.set_weights(ws)
    return convert_int8(model, rep, per_channel=case.per_channel)


def build_sweep(cases: list[Case], workdir, kernels: str = "reference") -> dict:
    """Convert every case, generate ONE library holding them all, build it; returns a dict for check()."""
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host

    paths = {}
    for c in cases:
        p = workdir / f"{c.name}.tflite"
        if not p.exists():
            data = convert(c)
            p.write_bytes(c.patch(data) if c.patch else data)
        paths[c.name] = p
    out = workdir / f"lib_{kernels}"
    report = generate(paths, out, kernels=kernels, measure=False, compare_tflm=False)
    return {"paths": paths, "exe": build_host(out), "report": report}


def check(sweep: dict, name: str, n_random: int = 40, seed: int = 1) -> None:
    from tinyexit.codegen import read_model
    from tinyexit.conformance import run_host, structured_inputs, tflm_outputs

    path = sweep["paths"][name]
    g = read_model(path)
    rng = np.random.default_rng(seed)
    shape = g.input.shape[1:]
    x = np.concatenate([rng.integers(-128, 128, size=(n_random, *shape)).astype(np.int8),
                        structured_inputs(shape, g.input.zero_point, rng)])
    want = tflm_outputs(path, x)
    got = run_host(sweep["exe"], name, x, g.output.nbytes)
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, (f"{name}: {bad.size}/{len(x)} inputs differ; first: got {got[bad[0]][:16]} "
                           f"want {want[bad[0]][:16]}")
    stepped = run_host(sweep["exe"], name, x[:4], g.output.nbytes, chunk=1, scramble=True)
    np.testing.assert_array_equal(stepped, want[:4], err_msg=f"{name}: unit-by-unit run differs")


def op_names(sweep: dict, name: str) -> list[str]:
    return sweep["report"].models[name].ops


def sweep_fixture(cases: list[Case], *, name: str = "sweep", subdir: str | None = None):
    """A module-scoped fixture `name` that converts, generates and builds `cases` once (build_sweep)."""
    import pytest

    @pytest.fixture(scope="module", name=name)
    def _sweep(ops_workdir, kernels):
        work = ops_workdir
        if subdir:
            work = ops_workdir / subdir
            work.mkdir(exist_ok=True)
        return build_sweep(cases, work, kernels)
    return _sweep


def matches_tflm(cases: list[Case], ops=None, *, sweep: str = "sweep", n_random: int = 40):
    """The parametrized test that every case's generated C gives tflite_micro's bytes. `ops` says what the
    library must hold: a list (exactly these ops), a str (this op among them) or a set (one of these)."""
    import pytest

    @pytest.mark.usefixtures(sweep)          # known at collection: the sweep's `kernels` parametrization applies
    @pytest.mark.parametrize("name", [c.name for c in cases])
    def test(request, name):
        s = request.getfixturevalue(sweep)
        got = op_names(s, name)
        if isinstance(ops, list):
            assert got == ops
        elif isinstance(ops, str):
            assert ops in got, got
        elif ops is not None:
            assert set(ops) & set(got), got
        check(s, name, n_random=n_random)
    return test
