import numpy as np
import pytest

from tests.conftest import conformance_model, require_program

CONFORMANCE = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}


@pytest.fixture(scope="session")
def conformance_lib(tmp_path_factory):
    """One library with both conformance models, generated and built once per test session."""
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host

    require_program("gcc", "apt-get install -y gcc make")
    paths = {name: conformance_model(f) for name, f in CONFORMANCE.items()}
    out = tmp_path_factory.mktemp("conformance") / "lib"
    report = generate(paths, out)
    return {"dir": out, "exe": build_host(out), "report": report, "paths": paths}


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(20261122)
