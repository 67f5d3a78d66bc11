"""`tinyexit profile`: the per-layer windows add up to the whole-inference window of the same library (less a
small fixed overhead: tx_invoke's input and output copies and step loop, minus the per-step windows' own call
sequence), per-layer MACs are count_macs of each layer alone, outputs are tflite_micro's, and the memory plan's
rectangles never overlap while both tensors are live (checked here independently of the planner). CLI: bad
inputs are one line, exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.codegen._random_models import RandomModel
from tests.conftest import conformance_model, require_program

REPO = Path(__file__).resolve().parents[1]


def tiny_model(path: Path) -> RandomModel:
    """conv 3x3, depthwise 3x3, conv 1x1, average pool, reshape, fully connected, softmax on 8x8x4 inputs:
    256-byte inputs, so every input the bench driver bakes in is word-aligned (its copy costs the same)."""
    m = RandomModel(np.random.default_rng(7), "loguniform", 2, tag="p")
    x = m.input((1, 8, 8, 4))
    x = m.conv(x, 8, (3, 3), (1, 1), "same")
    x = m.depthwise(x, 1, (3, 3), (1, 1), "same")
    x = m.conv(x, 8, (1, 1), (1, 1), "same")
    x = m.pool(x, "avg", (2, 2), (2, 2), "valid")
    x = m.reshape(x, (1, 4 * 4 * 8))
    x = m.fully_connected(x, 6)
    m.softmax(x)
    path.write_bytes(m.g.serialize(m.g.layers[-1].output))
    return m


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyexit", "profile", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model profiled through the CLI on the emulated nrf52840 (3 inputs), with its JSON and PNG."""
    require_program("arm-none-eabi-gcc", "apt-get install -y --no-install-recommends gcc-arm-none-eabi "
                                         "libnewlib-arm-none-eabi")
    require_program("qemu-system-arm", "apt-get install -y --no-install-recommends qemu-system-arm")
    d = tmp_path_factory.mktemp("profile")
    m = tiny_model(d / "tiny.tflite")
    r = cli(str(d / "tiny.tflite"), "--board", "nrf52840", "--inputs", "3", "--json", str(d / "p.json"),
            "--png", str(d / "p.png"))
    assert r.returncode == 0, r.stderr
    return {"model": m, "path": d / "tiny.tflite", "doc": json.loads((d / "p.json").read_text()),
            "png": d / "p.png", "stdout": r.stdout}


@pytest.mark.emulator
def test_layers_add_up_to_the_whole_inference(tiny):
    doc = tiny["doc"]
    m = doc["models"]["tiny"]
    assert doc["identical_to_tflite_micro"] and m["identical_to_tflite_micro"]
    assert doc["kernels"] == "cortex_m4"          # the board's core picks the kernels
    n = len(m["steps"])
    whole, steps = m["instructions_per_input"], m["step_instructions_per_input"]
    assert len(whole) == 3 and all(len(s) == n for s in steps)
    # What the per-step windows leave out is fixed code (copies of fixed size and alignment, the loop): the
    # same for every input, while the layers themselves differ between inputs or not.
    overhead = {w - sum(s) for w, s in zip(whole, steps)}
    assert len(overhead) == 1, overhead
    o = overhead.pop()
    # Stated bound: at most one instruction per copied byte, 16 per step and 64 for the calls around them.
    assert 0 < o <= 64 + 16 * n + 256 + 6, o
    assert m["instructions"] == pytest.approx(np.mean(whole))
    assert m["overhead_instructions"] == pytest.approx(o)
    assert sum(s["instructions"] for s in m["steps"]) + o == pytest.approx(m["instructions"])
    assert sum(s["cycles"] for s in m["steps"]) + m["overhead_cycles"] == pytest.approx(m["cycles"])
    assert all(s["instructions"] > 0 for s in m["steps"])
    assert "total (one inference)" in tiny["stdout"] and tiny["png"].stat().st_size > 10_000


@pytest.mark.emulator
def test_layer_macs_are_count_macs_of_each_layer(tiny):
    from tinyexit.codegen.reader import count_macs
    g, m = tiny["model"].g, tiny["doc"]["models"]["tiny"]
    want = [count_macs(g.serialize(la.output, la.cut)) for la in g.layers]   # each layer as a model alone
    assert [s["macs"] for s in m["steps"]] == want
    assert m["macs"] == sum(want) == count_macs(tiny["path"].read_bytes()) > 0
    for s in m["steps"]:
        assert s["cycles_per_mac"] == (pytest.approx(s["cycles"] / s["macs"]) if s["macs"] else None)


def overlaps(mem: dict, arena: int) -> list[str]:
    """Every violation of the plan's one rule, checked from the rectangles alone: two tensors whose arena ranges
    overlap are never both live at a step, except where one reuses the other's bytes (`shares`: an alias, or an
    in-place op at the step where the input dies); a step's scratch overlaps no tensor live at that step."""
    rects, bad = mem["tensors"], []
    by_id = {r["tensor"]: r for r in rects}

    def cross(a, b) -> bool:
        return a["offset"] < b["offset"] + b["bytes"] and b["offset"] < a["offset"] + a["bytes"]

    for i, a in enumerate(rects):
        if a["offset"] < 0 or a["offset"] + a["bytes"] > arena:
            bad.append(f"tensor {a['tensor']} outside the arena")
        for b in rects[i + 1:]:
            if not cross(a, b) or a["last"] < b["first"] or b["last"] < a["first"]:
                continue
            old, new = (a, b) if a["first"] <= b["first"] else (b, a)
            ok = new["shares"] == old["tensor"] and (new["first"] == old["last"] or new["offset"] == old["offset"])
            if not ok:
                bad.append(f"tensors {a['tensor']} and {b['tensor']} overlap while both are live")
    for s in mem["scratch"]:
        for r in rects:
            if r["first"] <= s["step"] <= r["last"] and cross(s, r):
                bad.append(f"scratch of step {s['step']} overlaps tensor {r['tensor']}")
    for k, st in enumerate(mem["steps"]):          # each step's ranges are those of live rectangles
        for t, off, n in [*st["inputs"], st["output"]]:
            r = by_id[t]
            if (r["offset"], r["bytes"]) != (off, n) or not r["first"] <= k <= r["last"]:
                bad.append(f"step {k}: tensor {t} is not live there at {off}+{n}")
    return bad


@pytest.mark.parametrize("which", ["tiny", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_memory_rectangles_never_overlap_while_live(which, tmp_path):
    from tinyexit.codegen import generate
    path = tmp_path / "tiny.tflite"
    if which == "tiny":
        tiny_model(path)
    else:
        path = conformance_model(which)
    rep = generate({"m": path}, tmp_path / "lib", kernels="cortex_m4", measure=False, compare_tflm=False)
    fig = rep.models["m"]
    mem = fig.memory
    assert overlaps(mem, fig.arena_bytes) == []
    assert len(mem["steps"]) == len(fig.ops) and sum(s["weight_bytes"] for s in mem["steps"]) == fig.weight_bytes
    assert max(r["offset"] + r["bytes"] for r in mem["tensors"] + mem["scratch"]) <= fig.arena_bytes
    # the check can fail: move a tensor onto another one live at the same step (neither reusing the other)
    rs = mem["tensors"]
    a, b = next((a, b) for a in rs for b in rs if a is not b and a["first"] <= b["last"] and b["first"] <= a["last"]
                and b["shares"] != a["tensor"] and a["shares"] != b["tensor"])
    broken = json.loads(json.dumps(mem))
    next(r for r in broken["tensors"] if r["tensor"] == b["tensor"])["offset"] = a["offset"]
    assert any("overlap" in v for v in overlaps(broken, fig.arena_bytes))


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("tinyexit profile: error:") and all(w in lines[0] for w in words), lines[0]


def test_cli_refuses_bad_inputs_in_one_line(tmp_path):
    one_line_error(cli(str(tmp_path / "missing.tflite")), "does not exist")
    (tmp_path / "junk.tflite").write_bytes(b"this is not a flatbuffer at all")
    one_line_error(cli(str(tmp_path / "junk.tflite")), "junk.tflite", "not a TensorFlow Lite model")
    one_line_error(cli(str(tmp_path)), "not a quantized run", "tinyexit quantize")
    # a board without an emulator: the nrf52840 with only its real-board runner
    text = (REPO / "boards" / "nrf52840.yaml").read_text().replace("runners: [pyocd, qemu, renode]", "runners: [pyocd]")
    (tmp_path / "nrf52840.yaml").write_text(text)
    one_line_error(cli(str(conformance_model("kws_ref_model.tflite")), "--board", str(tmp_path / "nrf52840.yaml")),
                   "cannot be emulated", "qemu runner")
