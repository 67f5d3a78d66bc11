"""Temporal decisions in firmware: the integer C rule (firmware_templates/runtime/tx_temporal.h) built for the
host decides like the Python policies (tinyexit.policy.decisions) on every input of random int8 streams, alone
and composed with a max-softmax gate; the composition itself is checked against a direct implementation
written here; policy.json of the temporal kinds is read into the firmware's configuration, bad parameters
are refused in one line."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tinyexit.errors import TinyexitError
from tinyexit.policy.decisions import DifferenceDetection, MaxSoftmax, QParams, TemporalPatience, temporal_decide_q
from tinyexit.toolchain import TEMPLATES, compile_host

SOFTMAX = QParams(1 / 256, -128)
MACS = [100, 250]

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "tx_temporal.h"
/* stdin: kind param gate previous n classes, then per input: classes int8 values of the first exit and the
   final prediction. stdout per input: "<exit 0|1> <decision>". */
int main(void)
{
  int kind, prev;
  long param, gate;
  unsigned n, c;
  if (scanf("%d %ld %ld %d %u %u", &kind, &param, &gate, &prev, &n, &c) != 6) return 2;
  tx_temporal_cfg_t cfg = {kind, (int32_t)param, (int32_t)gate, prev};
  int8_t *ref = malloc(c), *q = malloc(c);
  tx_temporal_t s;
  tx_temporal_init(&s, ref, c);
  for (unsigned t = 0; t < n; t++) {
    int v, f;
    for (unsigned i = 0; i < c; i++) {
      if (scanf("%d", &v) != 1) return 3;
      q[i] = (int8_t)v;
    }
    if (scanf("%d", &f) != 1) return 4;
    if (tx_temporal_early(&s, &cfg, q, c)) {
      printf("0 %d\n", (int)s.last);
    } else {
      memset(q, 0x55, c);  /* the rest of the model may overwrite the exit's output */
      tx_temporal_final(&s, &cfg, f);
      printf("1 %d\n", f);
    }
  }
  return 0;
}
"""

KINDS = {"difference": 1, "patience": 2}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    d = tmp_path_factory.mktemp("temporal")
    (d / "driver.c").write_text(DRIVER)
    return compile_host([d / "driver.c"], d / "driver", include_dirs=[TEMPLATES / "runtime"])


def run_c(exe, kind, param, gate, previous, first, final_pred):
    lines = [f"{KINDS[kind]} {param} {gate} {int(previous)} {len(first)} {first.shape[1]}"]
    lines += [" ".join(map(str, row.tolist())) + f" {int(f)}" for row, f in zip(first, final_pred)]
    p = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    out = np.array([[int(v) for v in ln.split()] for ln in p.stdout.split("\n") if ln], np.int64).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def stream(rng, n, c, sticky):
    """Random int8 first-exit outputs and final predictions with runs (so that both rules stop sometimes)."""
    first = np.empty((n, c), np.int64)
    final = np.empty(n, np.int64)
    cur = rng.integers(c)
    base = rng.integers(-128, 128, c)
    for t in range(n):
        if rng.random() > sticky:
            cur, base = rng.integers(c), rng.integers(-128, 128, c)
        noise = rng.integers(-6, 7, c) if rng.random() < 0.8 else rng.integers(-60, 61, c)
        row = np.clip(base + noise, -128, 127)
        if rng.random() < 0.7:
            row[cur] = min(127, row.max() + rng.integers(0, 3))
        first[t] = row
        final[t] = cur if rng.random() < 0.85 else rng.integers(c)
    return first.astype(np.int8), final


@pytest.mark.parametrize("kind", ["difference", "patience"])
@pytest.mark.parametrize("gated", [False, True])
def test_c_rule_decides_as_python_on_random_int8_streams(driver, kind, gated):
    rng = np.random.default_rng(7 + gated + 2 * (kind == "patience"))
    stops = 0
    for trial in range(12):
        c = int(rng.integers(2, 13))
        first, final = stream(rng, int(rng.integers(1, 150)), c, sticky=float(rng.uniform(0.5, 0.97)))
        gate = int(rng.integers(-128, 129)) if gated else -128
        previous = bool(trial % 2) and kind == "difference"
        param = int(rng.integers(-1, 3000)) if kind == "difference" else int(rng.integers(1, 6))
        want = temporal_decide_q(kind, first, final, param, gate, MACS, "previous" if previous else "scene")
        ex, dec = run_c(driver, kind, param, gate, previous, first, final)
        assert ex.tolist() == want.exit_index.tolist()
        assert dec.tolist() == want.decision.tolist()
        stops += int((ex == 0).sum())
    assert stops > 0  # the rules did stop early on these streams: the comparison covers both branches


def direct_patience(early, final, k, gate_ok):
    """Temporal patience AND a max-softmax gate, written out from the definition (decisions.py's docstring)."""
    out, last, streak = [], None, 0
    for e, f, g in zip(early, final, gate_ok):
        streak = streak + 1 if last is not None and e == last else 0
        if streak >= k and g:
            out.append((0, last))
        else:
            out.append((1, f))
            if f != last:
                last, streak = f, int(e == f)
    return out


def direct_difference(first_p, final, t, gate_ok, reference):
    out, last, ref = [], None, None
    for x, f, g in zip(first_p, final, gate_ok):
        if ref is not None and np.linalg.norm(x - ref) <= t and g:
            out.append((0, last))
            ref = x if reference == "previous" else ref
        else:
            out.append((1, f))
            last, ref = f, x
    return out


@pytest.mark.parametrize("seed", range(4))
def test_composition_with_max_softmax_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    first, final = stream(rng, 200, 5, sticky=0.9)
    fin = np.eye(5, dtype=np.int64)[final] * 255 - 128   # a final output whose argmax is `final`
    code = int(np.quantile(first.astype(np.int64).max(axis=1), rng.uniform(0.3, 0.7)))
    gate = (code + 128) / 256 - 1e-6                       # the gate passes about half the inputs
    gate_ok = first.astype(np.int64).max(axis=1) >= MaxSoftmax(gate).threshold_q(SOFTMAX)
    assert 0 < gate_ok.sum() < len(gate_ok)
    early = np.argmax(first, axis=1)
    for k in (1, 2, 3):
        r = TemporalPatience(k, max_softmax=gate).evaluate_q([first, fin], [SOFTMAX, SOFTMAX], MACS)
        assert list(zip(r.exit_index.tolist(), r.decision.tolist())) == \
            [(e, d) for e, d in direct_patience(early, final, k, gate_ok)]
    p = SOFTMAX.dequantize(first.astype(np.int64))
    for t, ref in ((0.05, "scene"), (0.2, "previous"), (0.4, "scene")):
        r = DifferenceDetection(t, ref, max_softmax=gate).evaluate_q([first, fin], [SOFTMAX, SOFTMAX], MACS)
        assert list(zip(r.exit_index.tolist(), r.decision.tolist())) == direct_difference(p, final, t, gate_ok, ref)
        assert r.macs.tolist() == [MACS[e] for e in r.exit_index]
    # no gate: the composition is the temporal rule alone
    a = TemporalPatience(2).evaluate_q([first, fin], [SOFTMAX, SOFTMAX], MACS)
    assert list(zip(a.exit_index.tolist(), a.decision.tolist())) == direct_patience(early, final, 2, [True] * 200)


MANIFEST = {"segments": [{"name": "seg0", "input_shape": [1, 4], "output_shape": [1, 3]},
                         {"name": "seg1", "input_shape": [1, 3], "output_shape": [1, 5]}],
            "exits": [{"name": "exit1", "file": "exit1.tflite", "after_segment": 0,
                       "output": {"scale": 1 / 256, "zero_point": -128}},
                      {"name": "final", "file": None}],
            "classes": [str(i) for i in range(5)]}


def test_temporal_policy_json_becomes_the_firmware_configuration(tmp_path):
    from tinyexit.build import render_config
    from tinyexit.pipeline import Pipeline
    pol = {"policy": "difference", "distance_q": 900, "reference": "previous",
           "exits": [{"name": "exit1", "threshold_q": 40}]}
    pipe = Pipeline.from_manifest(MANIFEST, pol)
    assert (pipe.policy.kind, pipe.policy.rule, pipe.policy.param_q, pipe.policy.reference) == \
        ("difference", "max_softmax", 900, "previous")
    render_config(pipe, tmp_path)
    h = (tmp_path / "tx_pipeline_config.h").read_text()
    for line in ("#define TX_PIPELINE_TEMPORAL TX_TEMPORAL_DIFFERENCE", "#define TX_PIPELINE_TEMPORAL_PARAM (900)",
                 "#define TX_PIPELINE_TEMPORAL_REFERENCE_PREVIOUS 1", "#define TX_PIPELINE_TEMPORAL_GATE (40)"):
        assert line in h
    assert (tmp_path / "tx_temporal.h").is_file()
    pat = Pipeline.from_manifest(MANIFEST, {"policy": "patience", "patience": 3,
                                            "exits": [{"name": "exit1", "threshold_q": -128}]})
    assert (pat.policy.kind, pat.policy.param_q) == ("patience", 3)
    static = Pipeline.from_manifest(MANIFEST, {"policy": "max_softmax", "exits": [{"name": "exit1", "threshold_q": 9}]})
    render_config(static, tmp_path / "s")
    assert "TEMPORAL" not in (tmp_path / "s" / "tx_pipeline_config.h").read_text()


@pytest.mark.parametrize("pol, words", [
    ({"policy": "patience", "patience": 0}, "\"patience\" >= 1"),
    ({"policy": "patience", "patience": "3"}, "\"patience\" >= 1"),
    ({"policy": "patience"}, "\"patience\" >= 1"),
    ({"policy": "difference", "distance_q": 2.5}, "\"distance_q\" >= -1"),
    ({"policy": "difference", "distance_q": 10, "reference": "first"}, "reference 'first'"),
    ({"policy": "temporal", "patience": 2}, "the firmware implements"),
])
def test_bad_temporal_parameters_are_one_line_errors(pol, words):
    from tinyexit.pipeline import Pipeline
    with pytest.raises(TinyexitError) as e:
        Pipeline.from_manifest(MANIFEST, {**pol, "exits": [{"name": "exit1", "threshold_q": 0}]})
    assert words in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ a tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests._tiny_run import make_tiny_run
    return make_tiny_run(tmp_path_factory.mktemp("temporal_run") / "run")


@pytest.mark.parametrize("kind", ["patience", "difference"])
def test_calibrate_writes_a_temporal_policy_the_firmware_accepts(tiny_run, tmp_path, kind):
    from tinyexit.build import pipeline_from_run
    from tinyexit.policy.calibrate import calibrate_run
    from tinyexit.run import Run
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    p = calibrate_run(run, policy=kind, epsilon=0.3, stream_scenes=4.0, gate=0.05 if kind == "patience" else None)
    pol = Run(run).policy()
    assert pol["policy"] == kind and "not exchangeable" in pol["guarantee"] and pol["test"]["stream"]
    pipe, _, _ = pipeline_from_run(run)
    assert pipe.policy.kind == kind
    assert pipe.policy.param_q == (p["patience"] if kind == "patience" else p["distance_q"])
    assert pipe.policy.exits[0].threshold_q == p["threshold_q"]
    if kind == "patience" and p["selected"]:
        assert p["threshold_q"] == MaxSoftmax(0.05).threshold_q(QParams.of(pol["exits"][0]["output"]))


def test_calibrate_refuses_bad_temporal_options(tiny_run, tmp_path):
    from tinyexit.policy.calibrate import calibrate_run
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for kw, words in ((dict(stream_scenes=0.5), "--stream-scenes"), (dict(gate=1.5), "--gate"),
                      (dict(stream_length=0), "--stream-length"), (dict(source="float"), "--source float")):
        with pytest.raises(TinyexitError) as e:
            calibrate_run(run, policy="patience", **kw)
        assert words in str(e.value) and "\n" not in str(e.value)
    (run / "policy.json").write_text('{"policy": "patience", "patience": 0, "exits": [{"name": "exit1", '
                                     '"threshold_q": 0}]}')
    from tinyexit.run import Run
    with pytest.raises(TinyexitError, match="patience"):
        Run(run).policy()


@pytest.mark.parametrize("pol", [
    {"policy": "patience", "patience": 2, "max_softmax": None, "gate": -128},
    {"policy": "patience", "patience": 1, "max_softmax": 0.11, "gate": None},
    {"policy": "difference", "distance_q": None, "reference": "scene", "max_softmax": None, "gate": -128},
    {"policy": "difference", "distance_q": None, "reference": "previous", "max_softmax": 0.11, "gate": None},
])
def test_host_app_decides_as_the_oracle_on_a_stream(tiny_run, tmp_path, pol):
    """The firmware app (tx_app.c over the generated description and library) built for the host, fed a scene
    stream of test inputs, against tflite_micro's outputs and the Python rule, input by input."""
    from tinyexit.bench import compare_with_oracle, oracle_decisions, oracle_outputs, stream_inputs
    from tinyexit.build import APP_SOURCES, build_host, library_sources, model_library, pipeline_from_run, render_app
    from tinyexit.run import Run
    from tinyexit.targets.app_output import parse_app_output
    run = Run(tiny_run)
    man = run.manifest()
    x_q, y = stream_inputs(run, man, 80, 4.0, seed=3)
    outs = oracle_outputs(run, x_q)
    qp = QParams.of(man["exits"][0]["output"])
    pol = dict(pol)
    gate = pol.pop("gate")
    if gate is None:   # a gate that some inputs pass and some do not
        pol["max_softmax"] = float(qp.dequantize(int(np.median(outs[0].astype(np.int64).max(axis=1)))))
        gate = MaxSoftmax(pol["max_softmax"]).threshold_q(qp)
    if pol["policy"] == "difference":   # the median squared distance of consecutive first-exit outputs
        d = np.diff(outs[0].astype(np.int64), axis=0)
        pol["distance_q"] = int(np.median((d * d).sum(axis=1)))
    pol["exits"] = [{"name": man["exits"][0]["name"], "threshold_q": int(gate)}]
    lib = model_library(run)
    pipe, _, policy = pipeline_from_run(run, pol)
    app = tmp_path / "app"
    render_app(pipe.with_library(lib), x_q, y, app)
    exe = build_host([app / s for s in APP_SOURCES] + library_sources(lib), tmp_path / "host",
                     include_dirs=[app, lib], defines={"TX_APP_NO_EXIT": 0, "TX_APP_SERIAL_INPUTS": 0})
    fw = parse_app_output(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
    dec = oracle_decisions(outs, policy, man)
    cmp = compare_with_oracle(fw, outs, dec)
    assert cmp["identical"] == cmp["inputs"] == len(x_q), cmp["mismatches"]
    if pol["policy"] == "difference":   # both branches taken (the untrained run's first exit rarely agrees with
        assert 0 < int((dec.exit_index == 0).sum()) < len(x_q)   # the final: patience's stops are covered above)


def test_cli_refuses_a_bad_stream_option_in_one_line(tiny_run):
    import os
    import sys
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-m", "tinyexit", "calibrate", str(tiny_run), "--policy", "difference",
                        "--stream-scenes", "0.5"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "--stream-scenes must be >= 1" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
