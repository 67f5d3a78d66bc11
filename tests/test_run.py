"""`tinyexit.run.Run`: the paths of a run directory as docs/CONTRACTS.md lays them out, and its checked readers
(model.json, model.keras, the split recipe, quant/manifest.json, policy.json): a good run reads back what was
written; every broken file is one TinyexitError naming the file and the command that regenerates it. No
TensorFlow here: the files are written by hand (a stand-in .keras zip, stand-in .tflite bytes)."""
from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path

import pytest

from tinyexit.errors import TinyexitError
from tinyexit.run import BranchDir, QuantDir, Run, confidence_model_name

REPO = Path(__file__).resolve().parents[1]

MODEL_JSON = {"task": "kws", "input_shape": [49, 10, 1], "classes": ["a", "b"],
              "exits": [{"name": "exit1", "point": "block1", "head": ["h"], "macs": 10},
                        {"name": "final", "point": None, "macs": 30}],
              "data": {"kind": "kws", "dir": None, "source": "synthetic"}}
QP = {"scale": 0.00390625, "zero_point": -128}
MANIFEST = {
    "segments": [{"name": "seg0", "file": "seg0.tflite", "input_shape": [49, 10, 1], "output_shape": [25, 5, 8],
                  "input": QP, "output": QP, "macs": 20},
                 {"name": "seg1", "file": "seg1.tflite", "input_shape": [25, 5, 8], "output_shape": [2],
                  "input": QP, "output": QP, "macs": 10}],
    "exits": [{"name": "exit1", "file": "exit1.tflite", "after_segment": 0, "output": QP, "macs": 5,
               "macs_to_exit": 25},
              {"name": "final", "file": None, "after_segment": 1, "output": QP, "macs": 0, "macs_to_exit": 35}],
    "no_exit_macs": 30, "classes": ["a", "b"]}
POLICY = {"policy": "max_softmax", "exit": "exit1", "threshold": 0.5, "threshold_q": 0,
          "exits": [{"name": "exit1", "threshold_q": 0, "output": QP}]}


def _write(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture()
def run(tmp_path) -> Path:
    """A complete run folder by hand: model.json, a zip standing in for model.keras, quant/ and policy.json."""
    r = tmp_path / "run"
    _write(r / "model.json", MODEL_JSON)
    with zipfile.ZipFile(r / "model.keras", "w") as z:
        z.writestr("config.json", "{}")
    _write(r / "quant" / "manifest.json", MANIFEST)
    for f in ("seg0.tflite", "seg1.tflite", "exit1.tflite"):
        (r / "quant" / f).write_bytes(b"stand-in")
    _write(r / "policy.json", POLICY)
    return r


def test_paths_follow_the_contract(tmp_path):
    r = Run(tmp_path / "R")
    assert r.path == tmp_path / "R" and Run(r).path == r.path and Path(r) == r.path and r.name == "R"
    want = {"model_keras": "model.keras", "model_json_path": "model.json", "report_path": "report.json",
            "history_path": "history.json", "training_plot": "training.png", "policy_path": "policy.json",
            "calibration_plot": "calibration.png", "confidence_dir": "confidence", "firmware_dir": "firmware",
            "library_dir": "firmware/model", "branch_dir": "branch", "powerfail_dir": "powerfail",
            "confidence_report_path": "confidence/report.json"}
    for attr, rel in want.items():
        assert getattr(r, attr) == tmp_path / "R" / rel, attr
    assert r.quant.path == tmp_path / "R" / "quant"
    assert r.quant.manifest_path == tmp_path / "R" / "quant" / "manifest.json"
    assert r.quant.report_path == tmp_path / "R" / "quant" / "report.json"
    assert r.quant.piece("seg0.tflite") == tmp_path / "R" / "quant" / "seg0.tflite"
    assert r.build_dir("nrf52840-qemu") == tmp_path / "R" / "firmware" / "build" / "nrf52840-qemu"
    assert r.bench_dir("nrf52840-qemu") == tmp_path / "R" / "bench" / "nrf52840-qemu"
    assert r.confidence_file("exit1", ".tflite") == tmp_path / "R" / "confidence" / "exit1.tflite"
    assert r.branch.manifest_path == tmp_path / "R" / "branch" / "manifest.json"
    assert r.branch.library_dir == tmp_path / "R" / "branch" / "firmware" / "model"
    assert confidence_model_name("exit1") == "exit1_confidence"


def test_a_good_run_reads_back(run):
    r = Run(run)
    assert r.is_trained() and r.is_quantized() and r.has_policy()
    assert r.check_trained() == MODEL_JSON and r.model_file() == run / "model.keras"
    assert r.manifest() == MANIFEST
    assert r.policy() == POLICY
    assert r.quant_models() == {"seg0": run / "quant" / "seg0.tflite", "seg1": run / "quant" / "seg1.tflite",
                                "exit1": run / "quant" / "exit1.tflite"}
    assert r.confidence_models() == {} and r.library_models() == r.quant_models()
    from tinyexit.codegen.generate import Link
    assert r.chain() == r.library_chain() == [Link("seg0", ("exit1",), "seg1")]
    assert r.library_report() is None


def test_confidence_policy_adds_its_models(run):
    conf = run / "confidence" / "exit1.tflite"
    pol = {**POLICY, "policy": "confidence",
           "exits": [{**POLICY["exits"][0], "confidence": {"file": "confidence/exit1.tflite"}}]}
    _write(run / "policy.json", pol)
    with pytest.raises(TinyexitError, match=r"confidence/exit1.tflite, which does not exist.*--policy confidence"):
        Run(run).confidence_models()
    conf.parent.mkdir()
    conf.write_bytes(b"stand-in")
    r = Run(run)
    assert r.confidence_models() == {"exit1": conf}
    assert r.library_models()["exit1_confidence"] == conf
    from tinyexit.codegen.generate import Link
    assert r.library_chain() == [Link("seg0", ("exit1_confidence", "exit1"), "seg1")]


def _model_json(change):
    doc = json.loads(json.dumps(MODEL_JSON))
    change(doc)
    return doc



def _replace(p, doc) -> None:
    """Remove `p` (doc None), or write raw bytes, or write `doc` as JSON."""
    if doc is None:
        p.unlink()
    elif isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(json.dumps(doc))

@pytest.mark.parametrize("doc, message", [
    (None, r"is not a run directory \(no model.json\); train one with `tinyexit train kws --out"),
    (b"\x89PNG{binary", r"model.json is not valid JSON .*re-run `tinyexit train`"),
    ([1, 2], r"model.json holds a JSON list, not a JSON object; re-run `tinyexit train`"),
    (_model_json(lambda d: d.pop("exits")), r"model.json: \"exits\" must list the exits.*re-run `tinyexit train`"),
    (_model_json(lambda d: d["exits"].reverse()), r"must end with the final exit \(point null\) and only it"),
    (_model_json(lambda d: d["exits"][0].update(point=None)), r"must end with the final exit"),
    (_model_json(lambda d: d.pop("data")), r"model.json has no data recipe \(\"data\"\); re-run `tinyexit train`"),
])
def test_a_broken_model_json_is_one_line_naming_the_fix(run, doc, message):
    _replace(run / "model.json", doc)
    with pytest.raises(TinyexitError, match=message) as e:
        Run(run).check_trained()
    assert "\n" not in str(e.value)


def test_a_broken_model_keras_is_refused_before_keras(run):
    (run / "model.keras").write_bytes((run / "model.keras").read_bytes()[:20])
    with pytest.raises(TinyexitError, match=r"model.keras cannot be loaded \(not a complete .keras zip"):
        Run(run).check_trained()
    (run / "model.keras").unlink()
    with pytest.raises(TinyexitError, match=r"model.keras does not exist; re-run `tinyexit train`"):
        Run(run).model_file()
    assert not Run(run).is_trained()


def _manifest(change):
    doc = json.loads(json.dumps(MANIFEST))
    change(doc)
    return doc


@pytest.mark.parametrize("doc, message", [
    (None, r"quant/manifest.json does not exist; re-run `tinyexit quantize "),
    (b"{\"segments\": [", r"manifest.json is not valid JSON"),
    (_manifest(lambda d: d.pop("exits")), r'no "exits" list'),
    (_manifest(lambda d: d["segments"][0].pop("input")), r'segments\[0\] has no valid "input"'),
    (_manifest(lambda d: d["segments"][1].update(output_shape=[0])), r'segments\[1\] has no valid "output_shape"'),
    (_manifest(lambda d: d["exits"][0].update(after_segment=True)), r'exits\[0\] has no valid "after_segment"'),
    (_manifest(lambda d: d["exits"][1].pop("macs_to_exit")), r'exits\[1\] has no valid "macs_to_exit"'),
    (_manifest(lambda d: d.pop("no_exit_macs")), r'no "no_exit_macs"'),
    (_manifest(lambda d: d["segments"][0].update(file="gone.tflite")), r"lists .*quant/gone.tflite, which does not exist"),
])
def test_a_broken_manifest_is_one_line_naming_quantize(run, doc, message):
    _replace(run / "quant" / "manifest.json", doc)
    for read in (Run(run).manifest, Run(run).quant_models, Run(run).chain):
        with pytest.raises(TinyexitError, match=message) as e:
            read()
        assert f"tinyexit quantize {run}" in str(e.value) and "\n" not in str(e.value)


def test_a_piece_that_does_not_parse_names_quantize(run):
    with pytest.raises(TinyexitError, match=r"seg0.tflite is not a readable TFLite model .*tinyexit quantize"):
        Run(run).oracle()


@pytest.mark.parametrize("doc, message", [
    (None, r"policy.json does not exist; re-run `tinyexit calibrate "),
    (b"\x00\x01", r"policy.json is not valid JSON"),
    ([1, 2], r"policy.json holds a JSON list"),
    ({**POLICY, "exits": [{"name": "exit1"}]}, r"not a complete exit policy .*integer \"threshold_q\""),
    ({**POLICY, "exits": [{"name": "exit1", "threshold_q": True}]}, r"not a complete exit policy"),
    ({"policy": "max_softmax", "exit": "exit1"}, r"not a complete exit policy"),
])
def test_a_broken_policy_is_one_line_naming_calibrate(run, doc, message):
    _replace(run / "policy.json", doc)
    with pytest.raises(TinyexitError, match=message) as e:
        Run(run).policy()
    assert f"tinyexit calibrate {run}" in str(e.value)


def test_an_older_single_exit_policy_is_read(run):
    old = {"policy": "margin", "exit": "exit1", "threshold_q": 3}
    _write(run / "policy.json", old)
    assert Run(run).policy() == old


def test_split_checks_its_recipe_without_loading_data(run, tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        Run(run).split("dev")
    _write(run / "model.json", _model_json(lambda d: d["data"].update(dir=str(tmp_path / "gone"))))
    with pytest.raises(TinyexitError, match=r"the data folder .*gone named by .*model.json does not exist"):
        Run(run).split("test")
    _write(run / "model.json", _model_json(lambda d: d["data"].pop("source")))
    with pytest.raises(TinyexitError, match=r"the data recipe \(\"data\"\) is incomplete or garbled"):
        Run(run).split("test")


def test_create_swaps_in_whole_or_leaves_the_old_run(run):
    with pytest.raises(RuntimeError):
        with Run.create(run) as tmp:
            assert tmp.path != run
            tmp.model_json_path.write_text("{}")
            raise RuntimeError("a failed stage")
    assert json.loads((run / "model.json").read_text()) == MODEL_JSON         # untouched
    with Run.create(run) as tmp:
        tmp.model_json_path.write_text(json.dumps({"new": 1}))
    assert json.loads((run / "model.json").read_text()) == {"new": 1}
    assert not (run / "quant").exists()                                        # replaced whole
    with Run(run).writing_quant() as q:
        assert isinstance(q, QuantDir) and q.run_path == run
        q.manifest_path.write_text("{}")
    assert (run / "quant" / "manifest.json").read_text() == "{}"


def test_branch_manifest_is_checked(tmp_path):
    b = BranchDir(tmp_path)
    assert not b.is_branch()
    with pytest.raises(TinyexitError, match=r"manifest.json does not exist; run `tinyexit branch RUN` first"):
        b.manifest()
    _write(b.manifest_path, {"segments": [{}, {}], "pools": [{}], "branch": {}, "vector": {"slices": []}})
    assert b.is_branch()
    with pytest.raises(TinyexitError, match="not a complete shared-branch manifest"):
        b.manifest()
    _write(b.manifest_path, {"segments": [{}, {}], "pools": [{}], "branch": {}, "vector": {"slices": [{}]}})
    assert b.manifest()["pools"] == [{}]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_import_graph_keeps_the_run_with_its_owner():
    """build, quantize and the policies do not import train (the run's readers are in run.py); codegen reads
    .tflite files and never a run folder."""
    pkg = REPO / "tinyexit"
    for f in [pkg / "build.py", *sorted((pkg / "quantize").glob("*.py")), *sorted((pkg / "policy").glob("*.py"))]:
        assert "tinyexit.train" not in _imports(f), f
    for f in sorted((pkg / "codegen").rglob("*.py")):
        assert not {"tinyexit.run", "tinyexit.train", "tinyexit.quantize"} & _imports(f), f
        assert "manifest.json" not in f.read_text(), f
