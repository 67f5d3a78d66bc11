"""Fixtures for the checkpointing runtime tests."""
from __future__ import annotations

import shutil

import pytest

from tinyexit.intermittent.host import build_host

from ._support import STANDIN_PIPELINE, make_standin


def pytest_collection_modifyitems(items):
    if shutil.which("gcc") is None:
        skip = pytest.mark.skip(reason="gcc is not installed (apt-get install gcc)")
        for item in items:
            if "intermittent" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("intermittent")


@pytest.fixture(scope="session")
def standin(build_dir):
    """The stand-in model library folder (tx_model.h + standin_model.c)."""
    return make_standin(build_dir / "standin_lib")


@pytest.fixture(scope="session")
def standin_exe(standin, build_dir):
    return build_host(standin, STANDIN_PIPELINE, build_dir / "standin")


@pytest.fixture(scope="session")
def tiny_branch(tmp_path_factory):
    """A tiny trained DS-CNN (3 blocks, 16 filters) with its shared exit branch over 3 exit points
    (RUN/branch/: int8 pieces + generated C), for the shared-branch checkpointing tests."""
    from ._support import make_tiny_branch
    return make_tiny_branch(tmp_path_factory.mktemp("tiny_branch"))
