"""The checkpointing runtime over real generated models (tinyexit.codegen from the MLPerf Tiny conformance
models): power-cut campaigns, and the uninterrupted result equal to TFLM's."""
from __future__ import annotations

import numpy as np
import pytest

from tinyexit.intermittent import prepare_library, run_campaign
from tinyexit.intermittent.campaign import uninterrupted
from tinyexit.intermittent.host import Granularity, HostTarget, build_host

from ..conftest import conformance_model
from ._support import random_inputs


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    model = conformance_model("kws_ref_model.tflite")
    out = tmp_path_factory.mktemp("kws")
    lib, pipe = prepare_library(model, out)
    exe = build_host(lib, pipe, out / "host")
    return model, exe, out


@pytest.mark.parametrize("gran", ["layer", "units:25"])
def test_kws_campaign_zero_wrong_results(kws, tmp_path, gran):
    _, exe, _ = kws
    t = HostTarget(exe, tmp_path / "nvm.bin")
    report = run_campaign(t, random_inputs(3, 490, seed=4), cuts=200, seed=2, granularity=Granularity.parse(gran))
    assert report.cuts >= 200 and report.cuts_in_commits >= 60
    assert report.ok, report.table()


def test_kws_uninterrupted_equals_tflm(kws, tmp_path):
    """The oracle of the campaign is itself right: the runtime-driven model gives TFLM's bytes."""
    from tinyexit.conformance import tflm_outputs
    model, exe, _ = kws
    t = HostTarget(exe, tmp_path / "nvm.bin")
    inputs = random_inputs(2, 490, seed=8)
    want = tflm_outputs(model, np.frombuffer(b"".join(inputs), np.int8).reshape(2, 49, 10, 1))
    for k, x in enumerate(inputs):
        (tmp_path / "in.bin").write_bytes(x)
        o = uninterrupted(t, tmp_path / "in.bin", 1, Granularity.parse("units:7"))
        assert o.output == np.asarray(want[k], np.int8).tobytes()


def test_resnet8_campaign_zero_wrong_results(tmp_path):
    """Residual ADDs keep two tensors live across layers: the live table must carry both."""
    model = conformance_model("pretrainedResnet_quant.tflite")
    lib, pipe = prepare_library(model, tmp_path)
    t = HostTarget(build_host(lib, pipe, tmp_path / "host"), tmp_path / "nvm.bin")
    report = run_campaign(t, random_inputs(2, 3072, seed=5), cuts=200, seed=9, granularity=Granularity.parse("units:8"))
    assert report.cuts >= 200 and report.ok, report.table()


def test_powerfail_checks_uninterrupted_runs_against_tflm(tmp_path):
    from tinyexit.intermittent import powerfail
    (report,) = powerfail(conformance_model("kws_ref_model.tflite"), tmp_path, cuts=40, num_inputs=2,
                          granularities=["units:10"])
    assert report.ok and report.reference_checked == 2 and report.exits == {0: report.completed}
