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


def require_program(name: str, install: str):
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed; install it with: {install} (or run scripts/setup.sh)")


def conformance_model(name: str) -> Path:
    p = CONFORMANCE / name
    if not p.is_file():
        pytest.skip(f"conformance model {p} is absent (it lives in ../shared/conformance beside the repo)")
    return p
