"""The generated C (host build) equals tflite_micro's reference interpreter byte for byte on the
conformance models, for random full-range and structured inputs."""
import numpy as np
import pytest

from tinyexit.codegen import read_model
from tinyexit.conformance import run_host, structured_inputs, tflm_outputs


def _inputs(path, n_random, rng):
    g = read_model(path)
    shape = g.input.shape[1:]
    rand = rng.integers(-128, 128, size=(n_random, *shape)).astype(np.int8)
    return np.concatenate([rand, structured_inputs(shape, g.input.zero_point, rng)]), g.output.nbytes


@pytest.mark.parametrize("name", ["kws", "resnet"])
def test_bit_exact_with_tflm(conformance_lib, rng, name):
    path = conformance_lib["paths"][name]
    x, out_size = _inputs(path, 200, rng)
    assert len(x) >= 200
    want = tflm_outputs(path, x)
    got = run_host(conformance_lib["exe"], name, x, out_size)
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, f"{bad.size} of {len(x)} inputs differ, first #{bad[:5]}: {got[bad[0]]} vs {want[bad[0]]}"
    # The comparison is informative only if the outputs actually vary with the input.
    assert len({row.tobytes() for row in want}) > 10


def test_arena_not_larger_than_tflm(conformance_lib):
    report = conformance_lib["report"]
    for name, m in report.models.items():
        assert m.tflm_activation_bytes is not None, "tflite_micro did not report its arena"
        assert m.arena_bytes <= m.tflm_activation_bytes <= m.tflm_arena_bytes, name
    assert report.models["kws"].arena_bytes <= 9000          # the project's targets (ANCHORS.md)
    assert report.models["resnet"].arena_bytes <= 33000
    assert report.models["resnet"].ops.count("CONV_2D+ADD") == 3     # one per residual block
    assert report.models["kws"].code_bytes is None or report.models["kws"].code_bytes <= 8 * 1024


def test_report_json_written(conformance_lib):
    import json

    doc = json.loads((conformance_lib["dir"] / "report.json").read_text())
    assert set(doc["models"]) == {"kws", "resnet"}
    assert doc["arena_bytes"] == max(m["arena_bytes"] for m in doc["models"].values())
    header = (conformance_lib["dir"] / "tx_model.h").read_text()
    assert f"#define TX_ARENA_SIZE {doc['arena_bytes']}u" in header


def test_cli_generates_one_tflite_and_prints_figures(conformance_lib, tmp_path, capsys):
    from tinyexit.cli import main

    out = tmp_path / "lib"
    assert main(["generate", str(conformance_lib["paths"]["kws"]), "--out", str(out), "--name", "kws",
                 "--no-tflm"]) == 0
    printed = capsys.readouterr().out
    report = conformance_lib["report"].models["kws"]
    assert f"{report.arena_bytes:,}" in printed and "weights" in printed and "code" in printed
    assert (out / "tx_model_kws.c").is_file() and (out / "report.json").is_file()
    # Same model, same generator: the same C (after the banner, which lists the library's sources).
    body = lambda p: p.read_text().split("\n", 1)[1]  # noqa: E731
    assert body(out / "tx_model_kws.c") == body(conformance_lib["dir"] / "tx_model_kws.c")
