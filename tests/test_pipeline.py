"""tinyexit.pipeline: the one description of the exit pipeline, built from a run (manifest + policy), from the
shared branch's manifest, and from a generated library's own description (report.json). Sizes are checked
against the .tflite files themselves (an independent reading), roles and thresholds against the run's files."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tinyexit.errors import TinyexitError
from tinyexit.pipeline import (BRANCH, CONFIDENCE, EXIT, POOL, SEGMENT, Granularity, Link, Pipeline, Stage,
                               library_models)


@pytest.fixture(scope="module")
def run_and_lib(tmp_path_factory):
    from tests._tiny_run import make_tiny_run
    from tinyexit.build import model_library
    run = make_tiny_run(tmp_path_factory.mktemp("pipe") / "run")
    return run, model_library(run)


def _sizes(tflite: Path) -> tuple[int, int]:
    from tinyexit.quantize import tensor_shape
    b = tflite.read_bytes()
    return math.prod(tensor_shape(b, "input")[1:]), math.prod(tensor_shape(b, "output")[1:])


def test_pipeline_of_a_run_matches_its_files_and_library(run_and_lib):
    from tinyexit.build import pipeline_from_run
    run, lib = run_and_lib
    pipe, man, policy = pipeline_from_run(run)
    assert [(s.name, s.role) for s in pipe.stages] == [("seg0", SEGMENT), ("exit1", EXIT), ("seg1", SEGMENT)]
    assert pipe.exit_names == ("exit1", "final") and pipe.stages[-1].exit_index == 1
    for s in pipe.stages:   # the sizes of the .tflite each stage runs
        assert (s.input_size, s.output_size) == _sizes(run / "quant" / f"{s.name}.tflite")
    assert pipe.input_size == pipe.stages[0].input_size
    # the policy: the rule and each exit's integer threshold of policy.json
    assert pipe.policy.kind == "threshold" and pipe.policy.rule == policy["policy"]
    assert {e.head: e.threshold_q for e in pipe.policy.exits} == {e["name"]: e["threshold_q"] for e in policy["exits"]}
    # the library the generator wrote holds the same models with the same sizes, chained as the pipeline says
    assert pipe.with_library(lib) == pipe
    doc = json.loads((lib / "report.json").read_text())
    assert doc["chain"] == [{"producer": "seg0", "readers": ["exit1"], "consumer": "seg1"}]
    assert pipe.chain == [Link("seg0", ("exit1",), "seg1")]
    # read back from the generator's description alone: the same stages
    back = Pipeline.from_library(lib)
    assert back.stages == pipe.stages and back.input_size == pipe.input_size


def test_the_app_and_the_runtime_take_the_same_pipeline(run_and_lib, tmp_path):
    """One description, two consumers: the app's configuration and the runtime's stage table name the same
    stages in the same order."""
    import re

    from tinyexit.build import pipeline_from_run, render_app
    from tinyexit.intermittent import render_pipeline
    run, _ = run_and_lib
    pipe, _, _ = pipeline_from_run(run)
    render_app(pipe, [], None, tmp_path / "app")
    render_pipeline(pipe, tmp_path / "rt")
    h = (tmp_path / "app" / "tx_pipeline_config.h").read_text()
    assert f'#define TX_PIPELINE_STAGE_NAMES "{",".join(pipe.stage_names)}"' in h
    for d in ("app", "rt"):
        table = (tmp_path / d / "tx_pipeline_config.c").read_text()
        assert re.findall(r"&tx_model_(\w+), (\w+)", table) == [
            ("seg0", "TX_STAGE_SEGMENT"), ("exit1", "TX_STAGE_EXIT"), ("seg1", "TX_STAGE_SEGMENT")]


def test_a_library_that_contradicts_the_pipeline_is_refused(run_and_lib, tmp_path):
    from tinyexit.build import pipeline_from_run
    run, lib = run_and_lib
    pipe, _, _ = pipeline_from_run(run)
    doc = json.loads((lib / "report.json").read_text())
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    doc["models"]["exit1"]["input_size"] += 1
    (wrong / "report.json").write_text(json.dumps(doc))
    with pytest.raises(TinyexitError, match="exit1"):
        pipe.with_library(wrong)
    del doc["models"]["exit1"]
    (wrong / "report.json").write_text(json.dumps(doc))
    with pytest.raises(TinyexitError, match="no model 'exit1'"):
        pipe.with_library(wrong)
    doc["chain"] = []
    doc["models"]["x"] = {"input_size": 1, "output_size": 1}
    (wrong / "report.json").write_text(json.dumps(doc))
    with pytest.raises(TinyexitError, match="no chain"):
        Pipeline.from_library(wrong)
    (wrong / "report.json").unlink()
    with pytest.raises(TinyexitError, match="report.json"):
        Pipeline.from_library(wrong)


def test_confidence_policy_puts_each_confidence_model_before_its_head():
    man = {"segments": [{"name": "seg0", "input_shape": [4, 4, 1], "output_shape": [2, 2, 3]},
                        {"name": "seg1", "input_shape": [2, 2, 3], "output_shape": [5]}],
           "exits": [{"name": "exit-1", "file": "e.tflite", "after_segment": 0}, {"name": "final", "file": None}]}
    pol = {"policy": "confidence", "exits": [{"name": "exit-1", "threshold_q": 7}]}
    with pytest.raises(TinyexitError, match="no confidence model for exit 'exit-1'"):
        Pipeline.from_manifest(man, pol)
    p = Pipeline.from_manifest(man, pol, confidence={"exit-1": "exit-1_confidence"})
    assert [(s.name, s.role, s.input_size, s.output_size) for s in p.stages] == [
        ("seg0", SEGMENT, 16, 12), ("exit_1_confidence", CONFIDENCE, 12, 2), ("exit_1", EXIT, 12, 5),
        ("seg1", SEGMENT, 12, 5)]
    assert p.policy.rule_for("exit_1").confidence == "exit_1_confidence"
    assert p.chain == [Link("seg0", ("exit-1_confidence", "exit-1"), "seg1")]   # the run's names, for codegen
    assert [s.name for s in p.runtime_stages] == ["seg0", "exit_1", "seg1"]
    with pytest.raises(TinyexitError, match="threshold for exit 'exit-1'"):
        Pipeline.from_manifest(man, {"policy": "max_softmax", "exits": []})
    with pytest.raises(TinyexitError, match="'temporal' policy"):
        Pipeline.from_manifest(man, {"policy": "temporal"})


def test_branch_pipeline_from_its_manifest():
    man = {"segments": [{"name": "s0", "input_shape": [10, 1], "output_shape": [4, 2]},
                        {"name": "s1", "input_shape": [4, 2], "output_shape": [2, 3]},
                        {"name": "s2", "input_shape": [2, 3], "output_shape": [3]}],
           "pools": [{"name": "pool0", "after_segment": 0, "offset": 0, "length": 2},
                     {"name": "pool1", "after_segment": 1, "offset": 2, "length": 3}],
           "branch": {"name": "branch"}, "vector": {"size": 5, "zero_point": -3}, "classes": ["a", "b", "c", "d"]}
    p = Pipeline.from_branch(man)
    assert p.is_branch and (p.vector.size, p.vector.zero_point) == (5, -3)
    assert [(s.name, s.role, s.exit_index, s.vector_offset, s.input_size, s.output_size) for s in p.stages] == [
        ("s0", SEGMENT, 0, 0, 10, 8), ("pool0", POOL, 0, 0, 8, 2), ("s1", SEGMENT, 0, 0, 8, 6),
        ("pool1", POOL, 1, 2, 6, 3), ("branch", BRANCH, 0, 0, 5, 4)]
    assert p.chain == []
    man["pools"][1]["after_segment"] = 0
    with pytest.raises(TinyexitError, match="pool pool1 follows segment 0"):
        Pipeline.from_branch(man)
    with pytest.raises(TinyexitError, match="seg0, pool0"):
        Pipeline(p.stages[:-1], vector=p.vector)


def test_pipeline_shapes_and_names_are_checked():
    with pytest.raises(TinyexitError, match="starts and ends with a segment"):
        Pipeline((Stage("a", SEGMENT), Stage("h", EXIT)))
    with pytest.raises(TinyexitError, match="shared-branch"):
        Pipeline((Stage("a", SEGMENT), Stage("p", POOL), Stage("b", SEGMENT)))
    with pytest.raises(TinyexitError, match="not a C identifier"):
        Stage("exit-1", EXIT)
    assert str(Granularity.parse("units:5")) == "units:5" and Granularity.parse("layer") == Granularity()


def test_library_models_of_the_generator(run_and_lib):
    _, lib = run_and_lib
    assert list(library_models(lib)) == ["seg0", "seg1", "exit1"]    # the generator's order: manifest order


def test_the_description_drives_the_runtime_to_the_oracle(run_and_lib, tmp_path):
    """The runtime built over the C description rendered from the run's Pipeline answers, uninterrupted and
    without a policy, the final exit of the int8 chain on tflite_micro (an independent oracle), byte for byte."""
    from tinyexit.build import pipeline_from_run
    from tinyexit.intermittent import Granularity, HostTarget, build_host, random_inputs, tflm_reference
    run, lib = run_and_lib
    pipe, _, _ = pipeline_from_run(run)
    t = HostTarget(build_host(lib, pipe.with_library(lib), tmp_path / "host"), tmp_path / "nvm.bin")
    assert (t.info["input_size"], t.info["stages"]) == (pipe.input_size, len(pipe.stages))
    assert [(r["name"], r["role"], r["exit"]) for r in t.layout()] == [(s.name, s.role, s.exit_index)
                                                                       for s in pipe.stages]
    t.erase_nvm()
    ref = tflm_reference(run)
    for i, x in enumerate(random_inputs(3, pipe.input_size, seed=4)):
        (tmp_path / "in.bin").write_bytes(x)
        b = t.boot(tmp_path / "in.bin", i, Granularity.parse("units:3"))
        assert b.boot == "fresh" and b.exit_index == 1 and b.output == ref(x)[-1]
