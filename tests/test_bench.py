"""End to end on a tiny two-exit model: quantized segments -> generated C library -> firmware on the
emulated nRF52840. For every test input the firmware's exit, class and output bytes equal the host build of
the same C and the Python oracle (tflite_micro segments + the Python max-softmax policy); the bench reports
exact instruction counts with and without early exit."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.emulator

N_INPUTS = 24


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import shutil
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm: apt-get install -y --no-install-recommends "
                    "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm (CI installs them)")
    import keras

    from tinyexit.codegen.generate import generate
    from tinyexit.run import Run
    from tinyexit.policy.decisions import MaxSoftmax
    from tinyexit.quantize import Int8Pipeline, count_macs, quantize_array, tensor_qparams, tensor_shape, quantize_model

    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block1")(inp)
    e = keras.layers.GlobalAveragePooling2D(name="exit1_pool")(h)
    e = keras.layers.Dense(3, activation="softmax", name="exit1")(e)
    f = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="block2")(h)
    f = keras.layers.GlobalAveragePooling2D(name="final_pool")(f)
    f = keras.layers.Dense(3, activation="softmax", name="final")(f)
    model = keras.Model(inp, [e, f])
    rng = np.random.default_rng(0)
    rep = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    q = quantize_model(model, ["block1"], rep)
    quant = run / "quant"
    quant.mkdir()
    segs, heads = q["segments"], q["heads"]
    for k, b in enumerate(segs):
        (quant / f"seg{k}.tflite").write_bytes(b)
    (quant / "exit1.tflite").write_bytes(heads[0])
    seg_macs = [count_macs(b) for b in segs]
    head_macs = count_macs(heads[0])
    manifest = {
        "segments": [{"name": f"seg{k}", "file": f"seg{k}.tflite", "input_shape": tensor_shape(b, "input")[1:],
                      "output_shape": tensor_shape(b, "output")[1:], "input": tensor_qparams(b, "input").to_json(),
                      "output": tensor_qparams(b, "output").to_json(), "macs": seg_macs[k]}
                     for k, b in enumerate(segs)],
        "exits": [{"name": "exit1", "file": "exit1.tflite", "after_segment": 0,
                   "output": tensor_qparams(heads[0], "output").to_json(), "macs": head_macs,
                   "macs_to_exit": seg_macs[0] + head_macs},
                  {"name": "final", "file": None, "after_segment": 1,
                   "output": tensor_qparams(segs[1], "output").to_json(), "macs": 0,
                   "macs_to_exit": sum(seg_macs) + head_macs}],
        "no_exit_macs": sum(seg_macs), "classes": ["a", "b", "c"]}
    (quant / "manifest.json").write_text(json.dumps(manifest))
    # inputs and a threshold that lets about half of them exit early
    x = rng.normal(size=(N_INPUTS, 8, 8, 1)).astype(np.float32)
    x_q = quantize_array(x, tensor_qparams(segs[0], "input")).reshape(N_INPUTS, -1)
    y = rng.integers(0, 3, N_INPUTS)
    outs = Int8Pipeline(segs, heads, [0]).run_q(x_q.reshape(N_INPUTS, 8, 8, 1))
    qp = manifest["exits"][0]["output"]
    tq = int(np.median(outs[0].reshape(N_INPUTS, -1).max(axis=1)))
    threshold = (tq - qp["zero_point"]) * qp["scale"]
    assert MaxSoftmax(threshold).threshold_q(qp) == tq
    policy = {"policy": "max_softmax", "exit": "exit1", "threshold": threshold, "threshold_q": tq,
              "exits": [{"name": "exit1", "threshold_q": tq, "output": qp}], "method": "test"}
    (run / "policy.json").write_text(json.dumps(policy))
    generate(Run(run).quant_models(), run / "firmware" / "model", compare_tflm=False)
    return run, (x_q, y)


def test_firmware_equals_host_and_oracle(tiny_run, tmp_path):
    from tinyexit.bench import compare_with_oracle, oracle_decisions, oracle_outputs
    from tinyexit.build import APP_SOURCES, build_host, build_run, library_sources, pipeline_from_run
    from tinyexit.targets.app_output import parse_app_output
    from tinyexit.targets import get_runner

    run, (x_q, y) = tiny_run
    fw = build_run(run, "nrf52840", emulate=True, inputs=(x_q, y), out=tmp_path / "fw")
    # build_run regenerated the library with the run's chain: the app reads the exit point in the arena
    assert "#define TX_CHAIN_seg0__exit1 1" in (run / "firmware" / "model" / "tx_model.h").read_text()
    emu = parse_app_output(get_runner(fw.board, "qemu").run(fw.elf, timeout=60).output)
    # host build of the same C (app + generated library)
    app = tmp_path / "fw" / "app"
    lib = run / "firmware" / "model"
    exe = build_host([app / s for s in APP_SOURCES] + library_sources(lib), tmp_path / "host",
                     include_dirs=[app, lib], defines={"TX_APP_NO_EXIT": 0, "TX_APP_SERIAL_INPUTS": 0})
    host = parse_app_output(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)
    assert emu.decisions() == host.decisions() and len(emu.results) == N_INPUTS
    # the Python oracle: tflite_micro outputs and the Python policy's decisions
    _, man, policy = pipeline_from_run(run)
    outs = oracle_outputs(run, x_q)
    dec = oracle_decisions(outs, policy, man)
    cmp = compare_with_oracle(emu, outs, dec)
    assert cmp["identical"] == N_INPUTS, cmp["mismatches"]
    assert 0 < int(np.sum(dec.exit_index == 0)) < N_INPUTS  # both exits are exercised


def test_bench_run(tiny_run, tmp_path):
    from tinyexit.bench import bench_run

    run, inputs = tiny_run
    lines = []
    r = bench_run(run, "nrf52840", emulate=True, inputs=inputs, out=tmp_path / "bench", log=lines.append)
    assert r["oracle"]["early_exit"]["identical"] == N_INPUTS and r["oracle"]["no_exit"]["identical"] == N_INPUTS
    assert r["host"] == {"inputs": N_INPUTS, "identical": N_INPUTS}
    ins = r["instructions"]
    rate = r["exit_rate"]["exit1"]
    assert 0 < rate < 1
    # early exits are cheaper per inference, and the mean is the rate-weighted mix of the exact per-exit costs
    c0, c1 = ins["per_exit_taken"]["exit1"], ins["per_exit_taken"]["final"]
    assert c0 < c1 and ins["per_inference_early_exit"] < ins["per_inference_no_exit"]
    assert ins["per_inference_early_exit"] == pytest.approx(rate * c0 + (1 - rate) * c1)
    # stopping early saves the second segment but running the head costs: final-exit inputs cost more than no-exit
    assert c1 > ins["per_inference_no_exit"]
    # exact stage counts: an early-exit inference is seg0 + exit1 plus a little glue (ticks, policy, markers)
    st = ins["per_stage"]
    assert st["seg0"]["runs"] == N_INPUTS and st["exit1"]["runs"] == N_INPUTS
    assert st["seg1"]["runs"] == round((1 - rate) * N_INPUTS)
    glue = c0 - st["seg0"]["mean_instructions"] - st["exit1"]["mean_instructions"]
    assert 0 < glue < 400
    for name, v in st.items():  # SysTick agrees with the exact count within its resolution
        assert abs(ins["per_stage_systick"][name]["mean_instructions"] - v["mean_instructions"]) < 2 * 40 + 60
    assert r["memory"]["flash"] < r["memory"]["flash_budget"] and r["memory"]["arena"] > 0
    assert (tmp_path / "bench" / "bench.json").exists() and (tmp_path / "bench" / "bench.png").stat().st_size > 1000
    assert "instructions / inference" in lines[-1]
    # the cycle estimate: every instruction costs at least one cycle, and stages have their own estimate
    c = r["estimated_cycles"]
    assert c["per_inference_no_exit"] >= ins["per_inference_no_exit"] and "est. cycles / inference" in lines[-1]
    assert all(v["mean_estimated_cycles"] >= v["mean_instructions"] for v in st.values())
    # the strict estimate only adds stalls to the default one
    assert c["strict_per_inference_no_exit"] >= c["per_inference_no_exit"] and "strict (address deps)" in lines[-1]
    print(lines[-1])


def _policy_run(tiny_run, tmp_path):
    """A copy of the tiny run to write a policy into: (run, inputs, labels, manifest, the first exit's output
    quantization, tflite_micro's outputs of every exit)."""
    import shutil

    from tinyexit.bench import oracle_outputs
    src, (x_q, y) = tiny_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    man = json.loads((run / "quant" / "manifest.json").read_text())
    return run, x_q, y, man, man["exits"][0]["output"], oracle_outputs(run, x_q)


@pytest.mark.parametrize("kind", ["margin", "entropy"])
def test_other_policies_match_python(tiny_run, tmp_path, kind):
    """The firmware's integer margin and entropy rules decide as tinyexit.policy does on every input."""
    from tinyexit.bench import compare_with_oracle, oracle_decisions
    from tinyexit.build import build_run
    from tinyexit.policy.decisions import STATIC_POLICIES
    from tinyexit.targets.app_output import parse_app_output
    from tinyexit.targets import get_runner

    run, x_q, y, man, qp, outs = _policy_run(tiny_run, tmp_path)
    cls = STATIC_POLICIES[kind]
    stat = cls(0.0).statistic_q(outs[0], qp)
    # a float threshold at the median statistic, so that both exits are taken
    med = float(np.median(stat))
    threshold = med * qp["scale"] if kind == "margin" else med / 2 ** 16
    tq = int(cls(threshold).threshold_q(qp))
    policy = {"policy": kind, "exit": "exit1", "threshold": threshold, "threshold_q": tq,
              "exits": [{"name": "exit1", "threshold_q": tq, "output": qp}]}
    (run / "policy.json").write_text(json.dumps(policy))
    fw = build_run(run, "nrf52840", emulate=True, inputs=(x_q, y), out=tmp_path / "fw")
    emu = parse_app_output(get_runner(fw.board, "qemu").run(fw.elf, timeout=60).output)
    dec = oracle_decisions(outs, policy, man)
    assert 0 < int(np.sum(dec.exit_index == 0)) < N_INPUTS
    cmp = compare_with_oracle(emu, outs, dec)
    assert cmp["identical"] == N_INPUTS, cmp["mismatches"]


@pytest.mark.parametrize("kind", ["difference", "patience"])
def test_temporal_policy_bench_equals_oracle(tiny_run, tmp_path, kind):
    """Temporal policies on the emulated board: the inputs are one stream, the state lives across them; the
    firmware's exit, decision and output bytes equal the integer Python rule on tflite_micro's outputs and the
    host build, on every input."""
    from tinyexit.bench import bench_run, oracle_decisions
    from tinyexit.policy.decisions import MaxSoftmax

    run, x_q, y, man, qp, outs = _policy_run(tiny_run, tmp_path)
    # a stream: inputs grouped by the final exit's class, those where the first exit agrees with it first
    early, final = outs[0].argmax(axis=1), outs[1].argmax(axis=1)
    order = np.lexsort((early != final, final))
    x_q, y, outs = x_q[order], np.asarray(y)[order], [o[order] for o in outs]
    gate = float((np.min(outs[0].astype(np.int64).max(axis=1)) + 1 - qp["zero_point"]) * qp["scale"])
    policy = {"policy": kind, "exit": "exit1", "max_softmax": gate, "threshold_q": MaxSoftmax(gate).threshold_q(qp),
              "exits": [{"name": "exit1", "threshold_q": MaxSoftmax(gate).threshold_q(qp), "output": qp}]}
    if kind == "difference":
        d = np.diff(outs[0].astype(np.int64), axis=0)
        policy.update(distance_q=int(np.median((d * d).sum(axis=1))), reference="scene", threshold=None)
    else:
        policy.update(patience=1, threshold=1.0)
    (run / "policy.json").write_text(json.dumps(policy))
    r = bench_run(run, "nrf52840", emulate=True, inputs=(x_q, y), out=tmp_path / "bench", log=None)
    dec = oracle_decisions(outs, policy, man)
    assert r["oracle"]["early_exit"]["identical"] == N_INPUTS, r["oracle"]["early_exit"]["mismatches"]
    assert r["host"] == {"inputs": N_INPUTS, "identical": N_INPUTS}
    if kind == "difference":   # this untrained model's first exit never agrees with its final one, so patience
        assert 0 < int(np.sum(dec.exit_index == 0)) < N_INPUTS   # never stops here (tests/policy covers its stops)
    assert r["exit_rate"]["exit1"] == pytest.approx(float(np.mean(dec.exit_index == 0)))


def test_bench_without_instruction_counter(tiny_run, tmp_path, monkeypatch):
    """With a runner that cannot count instructions (a real board's) the bench falls back to the firmware's own
    tick counts: here QEMU declared without the capability (asking it for a window would be refused)."""
    import dataclasses

    import tinyexit.bench as B
    from tinyexit.targets import runner_class
    qemu = runner_class("qemu")

    class NoCounter(qemu):
        caps = dataclasses.replace(qemu.caps, instruction_windows=False)

    monkeypatch.setattr(B, "get_runner", lambda board, runner=None, **kw: NoCounter(board))
    run, inputs = tiny_run
    lines = []
    r = B.bench_run(run, "nrf52840", emulate=True, inputs=inputs, out=tmp_path / "b", log=lines.append,
                    check_oracle=False)
    assert "instructions" not in r and "oracle" not in r
    t = r["ticks"]
    assert 0 < t["per_inference_early_exit"] < t["per_inference_no_exit"]
    assert "ticks / inference" in lines[-1]


def test_model_too_big_for_a_board_is_refused(tiny_run, tmp_path):
    """The same model on a board with 4 KiB of image flash and 1.5 KiB of RAM: refused, with the sizes."""
    import re

    from tinyexit.boards import BOARDS_DIR, load_board_file
    from tinyexit.build import ImageTooBigError, build_run

    run, inputs = tiny_run
    text = (BOARDS_DIR / "nrf52840.yaml").read_text()
    text = (text.replace("name: nrf52840", "name: tiny")
                .replace("flash: {origin: 0x00000000, size: 1M}", "flash: {origin: 0x00000000, size: 8K}")
                .replace("ram: {origin: 0x20000000, size: 256K}", "ram: {origin: 0x20000000, size: 1536}")
                .replace("origin: 0x000F0000, size: 64K, page_size: 4K", "origin: 0x00001000, size: 4K, page_size: 4K")
                .replace("stack_size: 8K", "stack_size: 1K"))
    board_file = tmp_path / "tiny.yaml"
    board_file.write_text(text)
    board = load_board_file(board_file, emulate=True)
    with pytest.raises(ImageTooBigError) as exc:
        build_run(run, board, inputs=inputs, out=tmp_path / "fw")
    msg = str(exc.value)
    assert "does not fit tiny" in msg and "has 4,096 B for the image" in msg and re.search(r"RAM needs [\d,]+ B but tiny has 1,536 B", msg)
    assert "weights" in msg and "Fix:" in msg


@pytest.mark.slow
def test_default_kws_run(tmp_path):
    """On the README's KWS run (when it exists): the emulated nRF52840 firmware equals the host build and the
    oracle on 20 test inputs, and the early exit saves instructions."""
    import shutil

    from tinyexit.bench import bench_run

    src = Path(__file__).resolve().parents[1] / "runs" / "kws"
    if not ((src / "policy.json").is_file() and (src / "quant" / "manifest.json").is_file()):
        pytest.skip("no calibrated runs/kws here: run the README's main command first")
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    run = tmp_path / "kws"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("bench", "firmware"))
    r = bench_run(run, "nrf52840", emulate=True, num_inputs=20, log=None)
    assert r["host"]["identical"] == 20
    assert r["oracle"]["early_exit"]["identical"] == 20 and r["oracle"]["no_exit"]["identical"] == 20
    if r["exit_rate"][r["exits"][0]] > 0:
        assert r["instructions"]["per_inference_early_exit"] < r["instructions"]["per_inference_no_exit"]


def test_confidence_policy_firmware_equals_oracle_at_the_boundary(tiny_run, tmp_path):
    """Policy "confidence": a separate int8 confidence model on segment 0's output decides; the firmware
    runs it, exits when its int8 P(right) >= threshold_q (then runs the head to answer). With threshold_q
    set to a code that some inputs have exactly, every firmware decision equals the rule computed here from
    tflite_micro's outputs (and bench's oracle), the boundary inputs exit and the ones one code below do not."""
    import shutil

    import keras

    from tinyexit.bench import bench_run, oracle_confidence
    from tinyexit.boards import load_board
    from tinyexit.build import pipeline_from_run
    from tinyexit.quantize import (QParams, TflmModel, convert_int8, count_macs, set_input_qparams,
                                   tensor_qparams)
    from tinyexit.targets.app_output import parse_app_output
    from tinyexit.targets import get_runner

    src, (x_q, y) = tiny_run
    run = tmp_path / "run"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("firmware"))
    man = json.loads((run / "quant" / "manifest.json").read_text())
    seg0_out = QParams.of(man["segments"][0]["output"])
    # a hand-made confidence model on the 8x8x6 boundary map: conv -> pool -> dense(2) -> softmax
    keras.utils.set_random_seed(5)
    inp = keras.Input((8, 8, 6))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Softmax()(keras.layers.Dense(2)(keras.layers.Dense(6, activation="relu")(h)))
    rng = np.random.default_rng(1)
    tfl = set_input_qparams(convert_int8(keras.Model(inp, out), rng.uniform(0, 3, (64, 8, 8, 6)).astype(np.float32)),
                            seg0_out)
    (run / "confidence").mkdir()
    (run / "confidence" / "exit1.tflite").write_bytes(tfl)
    # independent oracle: tflite_micro on the boundary tensors, the rule written out here
    seg0 = TflmModel((run / "quant" / "seg0.tflite").read_bytes())
    boundary = seg0.run(x_q.reshape(N_INPUTS, 8, 8, 1))[0].reshape(N_INPUTS, 8, 8, 6)
    conf = TflmModel(tfl).run(boundary)[0].reshape(N_INPUTS, 2)[:, 1].astype(int)
    head = TflmModel((run / "quant" / "exit1.tflite").read_bytes()).run(boundary)[0].reshape(N_INPUTS, -1)
    codes = np.unique(conf)
    assert len(codes) >= 3, conf
    tq = int(codes[len(codes) // 2])                    # a code some inputs have exactly
    cqp = tensor_qparams(tfl, "output")
    threshold = (tq - cqp.zero_point) * cqp.scale
    c_macs = count_macs(tfl)
    exit1 = man["exits"][0]
    policy = {"policy": "confidence", "exit": "exit1", "threshold": threshold, "threshold_q": tq,
              "model": "confidence/exit1.tflite",
              "exits": [{"name": "exit1", "threshold_q": tq, "output": exit1["output"],
                         "confidence": {"file": "confidence/exit1.tflite", "output": cqp.to_json(), "index": 1,
                                        "macs": c_macs}}],
              "macs_to_exit": [man["segments"][0]["macs"] + c_macs + exit1["macs"], man["no_exit_macs"] + c_macs]}
    (run / "policy.json").write_text(json.dumps(policy))
    want_exit = conf >= tq
    assert 0 < want_exit.sum() < N_INPUTS and np.any(conf == tq)

    pipe, _, _ = pipeline_from_run(run)
    assert pipe.stage_names == ["seg0", "exit1_confidence", "exit1", "seg1"]
    r = bench_run(run, "nrf52840", emulate=True, inputs=(x_q, y), out=tmp_path / "bench", log=None)
    fw = parse_app_output(get_runner(load_board("nrf52840", emulate=True), "qemu").run(
        tmp_path / "bench" / "early_exit" / "firmware.elf", timeout=60).output)
    got_exit = np.array([res.exit == 0 for res in fw.results])
    np.testing.assert_array_equal(got_exit, want_exit)
    for res in fw.results:
        if res.exit == 0:   # the exit head answers, ties to the lowest class
            assert res.predicted == int(np.argmax(head[res.index])) and res.output == head[res.index].astype(np.int8).tobytes()
    assert r["oracle"]["early_exit"]["identical"] == N_INPUTS and r["oracle"]["no_exit"]["identical"] == N_INPUTS
    assert r["host"]["identical"] == N_INPUTS
    outs, confs = oracle_confidence(run, x_q, policy)
    np.testing.assert_array_equal(confs[0][:, 1], conf)
    # the confidence model runs on every early-exit inference, the head only on exits
    st = r["instructions"]["per_stage"]
    assert st["exit1_confidence"]["runs"] == N_INPUTS and st["exit1"]["runs"] == int(want_exit.sum())
    assert st["seg1"]["runs"] == N_INPUTS - int(want_exit.sum())
    assert r["macs"]["to_exit"] == {"exit1": policy["macs_to_exit"][0], "final": policy["macs_to_exit"][1]}


def test_a_library_generated_for_a_board_gets_its_kernels(tiny_run, tmp_path):
    """Building a run that has no generated library yet: the library gets the board's kernel variant (the
    DSP kernels on the nRF52840's Cortex-M4F), and the firmware still equals the host build and TFLM."""
    import shutil

    from tinyexit.bench import bench_run
    run, inputs = tiny_run
    fresh = tmp_path / "run"
    shutil.copytree(run, fresh, ignore=shutil.ignore_patterns("firmware"))
    r = bench_run(fresh, "nrf52840", emulate=True, inputs=inputs, out=tmp_path / "bench", log=None)
    assert json.loads((fresh / "firmware" / "model" / "report.json").read_text())["kernels"] == "cortex_m4"
    assert r["oracle"]["early_exit"]["identical"] == N_INPUTS and r["host"]["identical"] == N_INPUTS
