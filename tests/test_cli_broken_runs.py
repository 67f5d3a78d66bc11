"""Every command refuses a broken run folder as a user would meet it: run as a separate process (`python -m
tinyexit ...`), exit status 2, exactly one line on stderr, no traceback, and the line names the broken file and
the command that regenerates it. The folder starts as a complete run (tests/_tiny_run.py; `build` accepts it,
see test_the_unbroken_run_builds) and each case breaks one thing: a truncated or missing model.keras, a
missing or garbled model.json or one without exits, a manifest without exits, a manifest whose .tflite is
gone or truncated, a garbled manifest, a garbled or incomplete policy.json, an incomplete data recipe, a data
folder that is gone. Plus the CLI's own
handler: an unexpected exception is one "internal error" line (exit 3), its traceback only with --verbose."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests._tiny_run import make_tiny_run


def _edit_json(rel: str, change):
    def apply(run: Path):
        doc = json.loads((run / rel).read_text())
        change(doc)
        (run / rel).write_text(json.dumps(doc))
    return apply


def _truncate(rel: str, keep: int):
    def apply(run: Path):
        (run / rel).write_bytes((run / rel).read_bytes()[:keep])
    return apply


BREAKS = {
    "model.keras truncated": _truncate("model.keras", 5000),
    "model.keras missing": lambda run: (run / "model.keras").unlink(),
    "model.json missing": lambda run: (run / "model.json").unlink(),
    "model.json garbled": lambda run: (run / "model.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff{binary"),
    "model.json without exits": _edit_json("model.json", lambda d: d.pop("exits")),
    "manifest without exits": _edit_json("quant/manifest.json", lambda d: d.pop("exits")),
    "manifest's seg0.tflite missing": lambda run: (run / "quant" / "seg0.tflite").unlink(),
    "manifest garbled": _truncate("quant/manifest.json", 40),
    "policy.json garbled": lambda run: (run / "policy.json").write_bytes(b"\x00\x01\x02"),
    "policy.json without threshold_q": _edit_json("policy.json", lambda d: d["exits"][0].pop("threshold_q")),
    "seg0.tflite truncated": _truncate("quant/seg0.tflite", 300),
    "policy.json a list": lambda run: (run / "policy.json").write_text("[1, 2]"),
    "data recipe incomplete": _edit_json("model.json", lambda d: d["data"].pop("seed")),
    "data folder gone": _edit_json("model.json", lambda d: d["data"].update(dir="/nonexistent/tinyexit-data")),
}

TRAIN, QUANT, CAL = "tinyexit train", "tinyexit quantize", "tinyexit calibrate"
# (break, command line with RUN for the folder, what the one line must name)
CASES = [
    ("model.keras truncated", ["quantize", "RUN"], ["model.keras", "cannot be loaded", TRAIN]),
    ("model.keras truncated", ["compress", "RUN", "--sparsity", "0.5"], ["model.keras", TRAIN]),
    ("model.keras truncated", ["branch", "RUN"], ["model.keras", TRAIN]),
    ("model.keras truncated", ["demo", "--reuse", "--task", "ic", "--out", "RUN"], ["model.keras", TRAIN]),
    ("model.keras truncated", ["augment", "RUN", "--out", "RUN-augmented"], ["model.keras"]),
    ("model.keras truncated", ["search", "RUN", "--accuracy-target", "0.5"], ["model.keras"]),
    ("model.keras missing", ["quantize", "RUN"], ["model.keras", "does not exist", TRAIN]),
    ("model.json missing", ["calibrate", "RUN"], ["model.json", TRAIN]),
    ("model.json garbled", ["distill", "RUN", "--student", "filters=8,blocks=2,exits=1"], ["model.json", TRAIN]),
    ("model.json garbled", ["build", "RUN", "--board", "nrf52840"], ["model.json", TRAIN]),
    ("model.json without exits", ["quantize", "RUN"], ["model.json", '"exits"', TRAIN]),
    ("model.json without exits", ["branch", "RUN"], ["model.json", '"exits"', TRAIN]),
    ("manifest without exits", ["build", "RUN", "--board", "nrf52840"], ["manifest.json", '"exits"', QUANT]),
    ("manifest without exits", ["bench", "RUN", "--emulate"], ["manifest.json", '"exits"', QUANT]),
    ("manifest without exits", ["flash", "RUN", "--board", "nrf52840", "--emulate"], ["manifest.json", QUANT]),
    ("manifest without exits", ["calibrate", "RUN"], ["manifest.json", QUANT]),
    ("manifest without exits", ["powerfail", "RUN", "--cuts", "1"], ["manifest.json", QUANT]),
    ("manifest's seg0.tflite missing", ["calibrate", "RUN"], ["seg0.tflite", QUANT]),
    ("manifest's seg0.tflite missing", ["build", "RUN", "--board", "nrf52840"], ["seg0.tflite", QUANT]),
    ("manifest's seg0.tflite missing", ["generate", "RUN"], ["seg0.tflite", QUANT]),
    ("manifest garbled", ["bench", "RUN", "--emulate"], ["manifest.json", QUANT]),
    ("manifest garbled", ["generate", "RUN"], ["manifest.json", QUANT]),
    ("manifest's seg0.tflite missing", ["profile", "RUN"], ["seg0.tflite", QUANT]),
    ("manifest garbled", ["profile", "RUN"], ["manifest.json", QUANT]),
    ("policy.json garbled", ["build", "RUN", "--board", "nrf52840"], ["policy.json", CAL]),
    ("policy.json garbled", ["bench", "RUN", "--emulate"], ["policy.json", CAL]),
    ("policy.json garbled", ["compress", "RUN", "--sparsity", "0.5"], ["policy.json", CAL]),
    ("policy.json without threshold_q", ["flash", "RUN", "--board", "nrf52840", "--emulate"], ["policy.json", CAL]),
    ("seg0.tflite truncated", ["calibrate", "RUN"], ["seg0.tflite", "not a readable TFLite model", QUANT]),
    ("policy.json a list", ["build", "RUN", "--board", "nrf52840"], ["policy.json", CAL]),
    ("data recipe incomplete", ["calibrate", "RUN"], ["model.json", '"data"', TRAIN]),
    ("data folder gone", ["quantize", "RUN"], ["model.json", "/nonexistent/tinyexit-data", TRAIN]),
    ("data folder gone", ["calibrate", "RUN"], ["model.json", "/nonexistent/tinyexit-data", TRAIN]),
    ("data folder gone", ["build", "RUN", "--board", "nrf52840"], ["model.json", "/nonexistent/tinyexit-data"]),
]


def _cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)   # as a user runs it: the tool itself keeps library logs quiet
    env.pop("TINYEXIT_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "tinyexit", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("valid") / "run")


@pytest.fixture(scope="module")
def outcomes(valid_run, tmp_path_factory) -> dict:
    """Every case run once, two at a time (each is a fresh Python process)."""
    root = tmp_path_factory.mktemp("broken")

    def one(k: int):
        brk, argv, _ = CASES[k]
        run = root / f"case{k}"
        shutil.copytree(valid_run, run)
        BREAKS[brk](run)
        return _cli([a.replace("RUN", str(run)) for a in argv], cwd=root)

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(range(len(CASES)), pool.map(one, range(len(CASES)))))


@pytest.mark.parametrize("k", range(len(CASES)), ids=[f"{c[1][0]}: {c[0]}" for c in CASES])
def test_a_broken_run_is_refused_in_one_line(outcomes, k):
    brk, argv, names = CASES[k]
    p = outcomes[k]
    lines = p.stderr.splitlines()
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"tinyexit {argv[0]}: error: "), lines[0]
    for name in names:
        assert name in lines[0], f"{name!r} not in: {lines[0]}"


def test_the_unbroken_run_builds(valid_run, tmp_path):
    """The control: the same folder, not broken, is accepted (so each refusal above is the break's)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs arm-none-eabi-gcc (scripts/setup.sh installs it)")
    run = tmp_path / "run"
    shutil.copytree(valid_run, run)
    p = _cli(["build", str(run), "--board", "nrf52840", "--inputs", "2"], cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (run / "firmware" / "build" / "nrf52840" / "firmware.elf").is_file()


def test_an_output_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    p = _cli(["data", "kws", "--out", str(tmp_path / "afile" / "data"), "--speakers", "3", "--takes", "1"],
             cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert f"cannot create the folder {tmp_path / 'afile'}" in p.stderr


def test_an_unexpected_exception_is_one_internal_error_line(monkeypatch, capsys):
    """A bug (here: a command that raises KeyError) is not dressed up as a user error: exit 3, one line naming
    the exception and --verbose; with --verbose the traceback comes first."""
    from tinyexit import cli
    from tinyexit.commands import generate

    def boom(args):
        raise KeyError("exits")

    monkeypatch.setattr(generate, "run", boom)
    assert cli.main(["generate", "x"]) == cli.INTERNAL_ERROR
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tinyexit generate: internal error: KeyError: 'exits'")
    assert "--verbose" in err[0]
    assert cli.main(["generate", "x", "--verbose"]) == cli.INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "raise KeyError" in err
    assert err.splitlines()[-1].startswith("tinyexit generate: internal error: KeyError")


def test_augment_refuses_a_truncated_standalone_keras_file(valid_run, tmp_path):
    """A .keras file that is not a run folder, cut short: named as truncated (Keras itself says 'file not found')."""
    data = (valid_run / "model.keras").read_bytes()
    bad = tmp_path / "user_model.keras"
    bad.write_bytes(data[: len(data) // 2])
    p = _cli(["augment", str(bad), "--task", "kws", "--out", str(tmp_path / "aug")], cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "user_model.keras is not a complete .keras archive" in p.stderr
    assert not (tmp_path / "aug").exists()
