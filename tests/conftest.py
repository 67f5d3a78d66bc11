import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"


@pytest.fixture(autouse=True, scope="session")
def _feature_cache(tmp_path_factory):
    """Keep test feature caches out of the user's cache folder."""
    os.environ["TINYEXIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(autouse=True)
def _quiet_logs_restored():
    """A test that runs `tinyexit -v ...` in-process turns verbose logging on for the process and, through the
    environment, for every child process started later; put it back so no later test depends on that order."""
    from tinyexit import logs

    saved = {k: os.environ.get(k) for k in (logs.ENV_VERBOSE, "TF_CPP_MIN_LOG_LEVEL")}
    yield
    if os.environ.get(logs.ENV_VERBOSE) != saved[logs.ENV_VERBOSE]:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        logs.install()


def require_program(name: str, install: str):
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed; install it with: {install} (or run scripts/setup.sh)")


def conformance_model(name: str) -> Path:
    p = CONFORMANCE / name
    if not p.is_file():
        pytest.skip(f"conformance model {p} is absent (it lives in ../shared/conformance beside the repo)")
    return p
