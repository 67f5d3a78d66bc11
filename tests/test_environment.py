"""The environment the tests run in is the locked one, and tinyexit's output is free of TensorFlow's chatter."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyexit import logs, setup_check

ROOT = Path(__file__).resolve().parents[1]


def test_every_installed_package_is_the_locked_version():
    """The suite passed with exactly requirements.lock; a drifted package would make its results meaningless."""
    assert setup_check.LOCK.is_file(), "requirements.lock is missing: run scripts/lock.sh"
    assert setup_check.lock_mismatches() == []


def test_lock_covers_the_direct_requirements():
    """Every package requirements.txt names is pinned in the lock at a version its specifier admits
    (scripts/lock.sh was re-run after an edit)."""
    from packaging.requirements import Requirement

    locked = {}
    for line in setup_check.LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            locked[setup_check._canonical(name)] = version
    for req in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / req).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                r = Requirement(line)
                version = locked.get(setup_check._canonical(r.name))
                assert version is not None, f"{r.name} ({req}) is not in requirements.lock"
                assert r.specifier.contains(version, prereleases=True), f"lock has {r.name}=={version}, {req} asks {r}"


def test_lock_mismatch_is_reported(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# comment\nnumpy==0.0.1\nno-such-package-xyz==1.0\n")
    problems = setup_check.lock_mismatches(lock)
    assert len(problems) == 2
    assert "numpy" in problems[0] and "locked 0.0.1" in problems[0]
    assert "installed nothing" in problems[1]


def _stderr_of_tensorflow_import(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", logs.ENV_VERBOSE)}
    env.update(env_extra)
    code = "import tinyexit, tensorflow, keras; print('imported')"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "imported", p.stderr
    return p.stderr


def test_tensorflow_start_up_lines_are_hidden_by_default_and_shown_when_verbose():
    quiet = _stderr_of_tensorflow_import({})
    assert quiet == "", f"tinyexit printed TensorFlow's start-up lines: {quiet[:300]!r}"
    loud = _stderr_of_tensorflow_import({logs.ENV_VERBOSE: "1"})
    if not loud:
        pytest.skip("this TensorFlow build prints nothing at import, so there is nothing to hide")
    assert any(logs.NOISE.search(line) for line in loud.splitlines())


def test_filter_keeps_lines_that_are_not_known_notices():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
            "E0000 something actually broke\n")
    assert logs.filter_lines(text) == "E0000 something actually broke\n"


def test_cli_verbose_flag_is_accepted_before_and_after_the_command():
    from tinyexit.cli import build_parser

    p = build_parser()
    assert p.parse_args(["-v", "generate", "m.tflite", "--out", "x"]).verbose is True
    assert p.parse_args(["generate", "-v", "m.tflite", "--out", "x"]).verbose is True
    assert p.parse_args(["generate", "m.tflite", "--out", "x"]).verbose is False


def test_verbose_in_process_is_undone_after_the_test_part1():
    """Pair with part2: a test that turns verbose on (as `tinyexit -v` does) must not leak it to later tests."""
    logs.set_verbose()
    assert logs.verbose()


def test_verbose_in_process_is_undone_after_the_test_part2():
    assert not logs.verbose(), "TINYEXIT_VERBOSE leaked from an earlier test (tests/conftest.py restores it)"
    assert any(isinstance(f, logs._QuietFinder) for f in sys.meta_path)
