"""`tinyexit bench RUN --board nrf52840 --emulate`: the run's firmware measured on the (emulated) board.

Two firmware images with the same baked-in test inputs: the early-exit pipeline with the calibrated policy,
and the same model with no early exit. Everything is read from the firmware's own output (predictions,
exits, output bytes, SysTick per stage) and, in emulation, from the QEMU plugin's exact instruction counts
of every inference (between tx_bench_begin and tx_bench_end). Optionally every output byte and exit decision
is checked against the Python oracle (tflite_micro segments + the Python policy).

    bench_run(run_dir, board="nrf52840", emulate=True, num_inputs=100) -> dict  (also RUN/bench/<board>/)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.boards import Board, load_board
from tinyexit.build import APP_SOURCES, build_host, build_run, library_sources, model_library, pipeline_from_run
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_dir, save_figure, write_json
from tinyexit.run import Run, as_run
from tinyexit.targets import Runner, RunResult, get_runner
from tinyexit.targets.app_output import AppOutput, parse_app_output
from tinyexit.toolchain import symbol_address


def _run_firmware(runner: Runner, fw, timeout: float) -> tuple[AppOutput, RunResult]:
    """One run of a bench firmware; with exact counts of every inference (tx_bench_begin .. tx_bench_end)
    when the runner counts instructions between two addresses."""
    if runner.caps.instruction_windows:
        window = (symbol_address(fw.elf, "tx_bench_begin"), symbol_address(fw.elf, "tx_bench_end"))
        res = runner.run(fw.elf, timeout=timeout, window=window, each_window=True)
    else:
        res = runner.run(fw.elf, timeout=timeout)
    return parse_app_output(res.output), res


def stage_instructions(runner: Runner, fw, out: AppOutput, timeout: float) -> dict:
    """Exact instructions of every stage (segment or exit head, one tx_invoke), from a second run whose
    instruction window is tx_stage_begin .. tx_stage_end: windows come in the order the stages ran."""
    runner.require("instruction_windows")
    window = (symbol_address(fw.elf, "tx_stage_begin"), symbol_address(fw.elf, "tx_stage_end"))
    res = runner.run(fw.elf, timeout=timeout, window=window, each_window=True)
    cyc = res.insns.per_window_cycles
    counts = iter(zip(res.insns.per_window, cyc if len(cyc) == len(res.insns.per_window) else
                      [None] * len(res.insns.per_window)))
    per_stage: dict[str, list[tuple]] = {name: [] for name in out.stages}
    try:
        for r in out.results:
            for name, t in zip(out.stages, r.ticks):
                if t is not None:
                    per_stage[name].append(next(counts))
    except StopIteration:
        raise TinyexitError("the stage windows do not match the stages the firmware reported") from None
    stages = {}
    for name, v in per_stage.items():
        if not v:
            continue
        ins = [i for i, _ in v]
        stages[name] = {"runs": len(v), "mean_instructions": float(np.mean(ins)), "min": int(min(ins)),
                        "max": int(max(ins))}
        if runner.caps.cycle_estimate and all(c is not None for _, c in v):
            stages[name]["mean_estimated_cycles"] = float(np.mean([c for _, c in v]))
    return stages


def oracle_outputs(run_dir: Run | Path, x_q: np.ndarray) -> list[np.ndarray]:
    """int8 output of every exit for every input, from tflite_micro (the firmware's bit-exact oracle)."""
    pipe = as_run(run_dir).oracle()
    shape = [len(x_q)] + list(pipe.segments[0].input_shape[1:])
    return [np.asarray(o, np.int8).reshape(len(x_q), -1) for o in pipe.run_q(np.asarray(x_q).reshape(shape))]


def oracle_confidence(run_dir: Path, x_q: np.ndarray, policy: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Confidence policy: (int8 output of every exit, int8 output of every early exit's confidence model),
    all from tflite_micro on the same chained boundary tensors."""
    from tinyexit.research.confidence import Int8ConfidenceChain
    run = as_run(run_dir)
    return Int8ConfidenceChain(run.path, run.confidence_models(policy)).run_q(np.asarray(x_q))


def oracle_decisions(outs: list[np.ndarray], policy: dict, manifest: dict, conf_outs: list[np.ndarray] | None = None):
    """What the Python policy decides on the oracle outputs: PolicyResult (decision, exit_index, macs).
    The confidence policy also needs the confidence models' int8 outputs (`oracle_confidence`)."""
    from tinyexit.policy.decisions import STATIC_POLICIES, LearnedConfidence
    exits = manifest["exits"]
    qparams = [e["output"] for e in exits]
    kind = policy.get("policy", "max_softmax")
    if kind in ("patience", "difference"):
        return _temporal_decisions(outs, policy, exits)
    if kind == "confidence":
        if conf_outs is None:
            raise TinyexitError("the confidence policy's oracle needs the confidence models' outputs "
                                "(tinyexit.bench.oracle_confidence)")
        thr = policy.get("threshold")
        pol = LearnedConfidence(float(thr) if thr is not None else float("inf"))
        cqp = [e["confidence"]["output"] for e in policy["exits"]]
        for e, qp in zip(policy["exits"], cqp):
            want = pol.threshold_q(qp)
            if int(e["threshold_q"]) != int(want):
                raise TinyexitError(f"policy.json's threshold_q {e['threshold_q']} for {e['name']} disagrees with "
                                    f"the Python policy's {want}; re-run `tinyexit calibrate --policy confidence`.")
        macs = policy.get("macs_to_exit") or [e["macs_to_exit"] for e in exits]
        return pol.evaluate_q(outs, conf_outs, cqp, macs)
    thr = policy.get("threshold")
    never = {"max_softmax": 2.0, "margin": 2.0, "entropy": -1.0}[kind]  # thresholds no output reaches
    pol = STATIC_POLICIES[kind](float(thr) if thr is not None else never)
    res = pol.evaluate_q(outs, qparams, [e["macs_to_exit"] for e in exits])
    for e, qp in zip(policy.get("exits", []), qparams):
        want = pol.threshold_q(qp)
        if int(e["threshold_q"]) != int(want):
            raise TinyexitError(f"policy.json's threshold_q {e['threshold_q']} for {e['name']} disagrees with the "
                                f"Python policy's {want}; re-run `tinyexit calibrate`.")
    return res


def _temporal_decisions(outs: list[np.ndarray], policy: dict, exits: list[dict]):
    """A temporal policy's decisions over the inputs in order (a stream): the integer rule with policy.json's
    integers (what the firmware is configured with), which must be the integer forms of its float parameters."""
    from tinyexit.pipeline import temporal_params
    from tinyexit.policy.decisions import DifferenceDetection, MaxSoftmax, temporal_decide_q
    kind = policy["policy"]
    param_q, reference = temporal_params(policy)
    gate = int(policy["exits"][0]["threshold_q"])
    qp = exits[0]["output"]
    want_gate = None if policy.get("max_softmax") is None else MaxSoftmax(float(policy["max_softmax"])).threshold_q(qp)
    if policy.get("selected", True) and gate != (-128 if want_gate is None else want_gate):
        raise TinyexitError(f"policy.json's gate threshold_q {gate} disagrees with its max_softmax "
                            f"{policy.get('max_softmax')}; re-run `tinyexit calibrate --policy {kind}`.")
    if kind == "difference" and policy.get("threshold") is not None and \
            DifferenceDetection(float(policy["threshold"])).threshold_q(qp) != param_q:
        raise TinyexitError(f"policy.json's distance_q {param_q} disagrees with its threshold "
                            f"{policy['threshold']}; re-run `tinyexit calibrate --policy difference`.")
    flat = [np.asarray(o).reshape(len(o), -1) for o in outs]
    from tinyexit.policy.decisions import argmax_first
    return temporal_decide_q(kind, flat[0], argmax_first(flat[-1]), param_q, gate,
                             [e["macs_to_exit"] for e in exits], reference)


def stream_inputs(run: Run, manifest: dict, num_inputs: int, mean_scene: float, seed: int = 0):
    """A scene stream of `num_inputs` test inputs (policy.streams.scene_stream), quantized as the firmware's
    front end does -> (int8 [N, input_size], labels [N]): the inputs of a temporal policy's bench."""
    from tinyexit.policy.streams import scene_stream
    from tinyexit.quantize.qparams import QParams, quantize_array
    x, y = run.split("test")
    idx = scene_stream(np.asarray(y), num_inputs, mean_scene, seed)
    qp = manifest["segments"][0]["input"]
    q = quantize_array(x[idx], QParams(float(qp["scale"]), int(qp["zero_point"])))
    return q.reshape(len(idx), -1), np.asarray(y)[idx]


def compare_with_oracle(fw: AppOutput, outs: list[np.ndarray], decisions) -> dict:
    """Per input: the firmware's exit, class and output bytes against the oracle's."""
    bad = []
    for r in fw.results:
        k = int(decisions.exit_index[r.index])
        want = outs[k][r.index].astype(np.int8).tobytes()
        if r.exit != k or r.predicted != int(decisions.decision[r.index]) or r.output != want:
            bad.append({"index": r.index, "firmware": [r.exit, r.predicted, r.output.hex()],
                        "oracle": [k, int(decisions.decision[r.index]), want.hex()]})
    return {"inputs": len(fw.results), "identical": len(fw.results) - len(bad), "mismatches": bad[:10]}


def compare_with_host(run: Run | Path, fw, board_out: AppOutput) -> dict:
    """Build the same app and library for the host (gcc), run it, compare exit/class/output per input."""
    import subprocess
    app, lib = fw.out / "app", model_library(run)
    exe = build_host([app / s for s in APP_SOURCES] + library_sources(lib), fw.out / "host", include_dirs=[app, lib],
                     defines={"TX_APP_NO_EXIT": 0, "TX_APP_SERIAL_INPUTS": 0})
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    host = parse_app_output(p.stdout)
    same = sum(a == b for a, b in zip(board_out.decisions(), host.decisions()))
    return {"inputs": len(board_out.results), "identical": same if len(host.results) == len(board_out.results) else 0}


def _stage_instructions(out: AppOutput, per_tick: float | None) -> dict:
    """Mean ticks of each stage over the inputs where it ran (x instructions per tick in emulation)."""
    stats = {}
    for s, name in enumerate(out.stages):
        vals = [r.ticks[s] for r in out.results if r.ticks[s] is not None]
        if vals:
            mean = float(np.mean(vals))
            stats[name] = {"runs": len(vals), "mean_ticks": mean,
                           "mean_instructions": mean * per_tick if per_tick else None}
    return stats


def _library_kernels(run: Run) -> str | None:
    """The kernel variant the run's generated library was built with (its report.json)."""
    return (run.library_report() or {}).get("kernels")


def bench_run(run_dir: str | Path, board: str | Board = "nrf52840", emulate: bool = True, *,
              num_inputs: int = 100, timeout: float = 900.0, runner: str | None = None, check_oracle: bool = True,
              inputs=None, out: str | Path | None = None, seed: int = 0,
              log: Callable[[str], None] | None = print, kernels: str | None = None) -> dict:
    """Build and run the early-exit and the no-exit firmware of `run_dir` on `board`; write
    RUN/bench/<board>/bench.json and bench.png, print the table (via `log`), return the JSON dict.
    `kernels`: kernel variant of the run's library (None: as generated; see build.model_library).
    The folder is written whole or not at all: a bench that fails (no compiler or emulator, an image too
    big, a firmware error) leaves an earlier bench there as it was."""
    run = as_run(run_dir)
    log = log or (lambda _m: None)
    b = load_board(board, emulate=emulate) if isinstance(board, str) else board
    board_runner = get_runner(b, runner)   # an unknown runner, or one the board lacks: refused before building
    if board_runner.caps.flash:  # no probe: fail at once, before building anything
        from tinyexit.targets import NoProbeError
        from tinyexit.targets.pyocd_runner import connected_probes, no_probe_message
        if not connected_probes():
            raise NoProbeError(no_probe_message(b))
    pipe, man, policy = pipeline_from_run(run)
    temporal = policy.get("policy") in ("patience", "difference")
    if inputs is None and temporal:   # consecutive inputs of a stream: the rule's state lives across them
        inputs = stream_inputs(run, man, num_inputs, float((policy.get("stream") or {}).get("mean_scene", 5.0)), seed)
    elif inputs is None:
        inputs = run.test_inputs(man, num_inputs, seed)
    x_q, y = np.asarray(inputs[0], np.int8), np.asarray(inputs[1])
    out_dir = Path(out) if out else run.bench_dir(b.variant)
    with atomic_dir(out_dir, holds=BENCH_OUTPUTS) as tmp:
        result = _measure(run, b, man, policy, x_q, y, tmp, timeout=timeout, runner=board_runner,
                          check_oracle=check_oracle, kernels=kernels, log=log)
        write_json(tmp / "bench.json", result)
        _plot(tmp / "bench.png", result)
    result["files"] = {"json": str(out_dir / "bench.json"), "png": str(out_dir / "bench.png")}
    log(table(result))
    return result


ESTIMATE_NOTE = ("estimated cycles, zero wait states, no flash wait states: Cortex-M4 TRM timings per executed "
                 "instruction (the QEMU plugin's model, tinyexit/targets/insn_count_plugin.c)")
BENCH_OUTPUTS = ("bench.json", "bench.png", "early_exit", "no_exit")   # what bench_run writes into its folder


def _measure(run: Run, b: Board, man: dict, policy: dict, x_q: np.ndarray, y: np.ndarray, out_dir: Path, *,
             timeout: float, runner: Runner, check_oracle: bool, kernels: str | None,
             log: Callable[[str], None]) -> dict:
    """bench_run's measurements: both firmware images built into `out_dir`, run, checked; the JSON dict."""
    log(f"bench: building the early-exit and the no-exit firmware for {b.name}"
        f"{' (emulated on ' + str(b.qemu_machine) + ')' if b.emulated else ''} with {len(x_q)} test inputs")
    fw_ee = build_run(run, b, inputs=(x_q, y), out=out_dir / "early_exit", kernels=kernels)
    fw_ne = build_run(run, b, inputs=(x_q, y), no_exit=True, out=out_dir / "no_exit", kernels=kernels)
    log(f"bench: running both on {runner.name}")
    ee, res_ee = _run_firmware(runner, fw_ee, timeout)
    ne, res_ne = _run_firmware(runner, fw_ne, timeout)
    if any(r.exit != len(ne.exits) - 1 for r in ne.results):
        raise TinyexitError("the no-exit firmware took an early exit; the firmware build is inconsistent.")

    exits = man["exits"]
    n = len(ee.results)
    exit_idx = np.array([r.exit for r in ee.results])
    pred_ee = np.array([r.predicted for r in ee.results])
    pred_ne = np.array([r.predicted for r in ne.results])
    labels = np.array([r.label for r in ee.results])
    # what an inference ending at each exit costs under this policy (confidence: plus the confidence models)
    macs_to_exit = np.array(policy.get("macs_to_exit") or [e["macs_to_exit"] for e in exits], np.int64)
    no_exit_macs = int(man.get("no_exit_macs", sum(s["macs"] for s in man["segments"])))
    mean_macs = float(macs_to_exit[exit_idx].mean()) if n else 0.0
    result = {
        "run": str(run), "board": b.name, "emulated": b.emulated, "machine": b.qemu_machine if b.emulated else None,
        "inputs": n, "exits": [e["name"] for e in exits],
        "policy": {k: policy.get(k) for k in ("policy", "threshold", "threshold_q", "method", "risk", "epsilon",
                                              "delta")},
        "accuracy": {"early_exit": float(np.mean(pred_ee == labels)) if n else None,
                     "no_exit": float(np.mean(pred_ne == labels)) if n else None,
                     "per_exit_taken": {e["name"]: (float(np.mean(pred_ee[exit_idx == k] == labels[exit_idx == k]))
                                                    if np.any(exit_idx == k) else None)
                                        for k, e in enumerate(exits)}},
        "exit_rate": {e["name"]: float(np.mean(exit_idx == k)) if n else 0.0 for k, e in enumerate(exits)},
        "macs": {"mean_early_exit": mean_macs, "no_exit": no_exit_macs,
                 "saving": 1.0 - mean_macs / no_exit_macs if no_exit_macs else None,
                 "to_exit": {e["name"]: int(m) for e, m in zip(exits, macs_to_exit)}},
        "agree_with_no_exit": float(np.mean(pred_ee == pred_ne)) if n else None,
        "kernels": _library_kernels(run),
    }
    if policy.get("policy") in ("patience", "difference"):
        result["policy"].update({k: policy.get(k) for k in ("patience", "distance_q", "reference", "max_softmax")})
        result["stream"] = {"mean_scene": (policy.get("stream") or {}).get("mean_scene"),
                            "note": "inputs in stream order; the temporal state lives across them"}
    per_tick = b.instructions_per_tick if b.emulated else None
    if res_ee.insns is not None and res_ne.insns is not None:
        w_ee, w_ne = res_ee.insns.per_window, res_ne.insns.per_window
        if len(w_ee) != n or len(w_ne) != n:
            raise TinyexitError(f"the plugin counted {len(w_ee)}/{len(w_ne)} inferences for {n} inputs.")
        per_exit = {e["name"]: (float(np.mean([w for w, k in zip(w_ee, exit_idx) if k == j]))
                                if np.any(exit_idx == j) else None) for j, e in enumerate(exits)}
        mean_ee, mean_ne = float(np.mean(w_ee)), float(np.mean(w_ne))
        result["instructions"] = {
            "exact": True, "counter": "QEMU plugin (tx_bench_begin .. tx_bench_end)",
            "per_inference_early_exit": mean_ee, "per_inference_no_exit": mean_ne,
            "saving": 1.0 - mean_ee / mean_ne if mean_ne else None,
            "per_exit_taken": per_exit, "min": int(min(w_ee)), "max": int(max(w_ne)),
            "per_stage": stage_instructions(runner, fw_ee, ee, timeout),
            "per_stage_source": "QEMU plugin (tx_stage_begin .. tx_stage_end, one tx_invoke)",
            "per_stage_systick": _stage_instructions(ee, per_tick),
            "instructions_per_mac_no_exit": mean_ne / no_exit_macs if no_exit_macs else None,
        }
        c_ee, c_ne = res_ee.cycles_per_window, res_ne.cycles_per_window
        if runner.caps.cycle_estimate and len(c_ee) == n and len(c_ne) == n:
            cee, cne = float(np.mean(c_ee)), float(np.mean(c_ne))
            result["estimated_cycles"] = {
                "note": ESTIMATE_NOTE, "per_inference_early_exit": cee, "per_inference_no_exit": cne,
                "saving": 1.0 - cee / cne if cne else None,
                "cycles_per_mac_no_exit": cne / no_exit_macs if no_exit_macs else None,
                # the strict estimate: a load/store whose address uses the load just before it is not pipelined
                "strict_per_inference_early_exit": float(np.mean(res_ee.cycles_strict_per_window)),
                "strict_per_inference_no_exit": float(np.mean(res_ne.cycles_strict_per_window))}
    else:
        unit = ee.unit
        t_ee = float(np.mean([sum(t for t in r.ticks if t) for r in ee.results]))
        t_ne = float(np.mean([sum(t for t in r.ticks if t) for r in ne.results]))
        result["cycles" if unit == "cycles" else "ticks"] = {
            "per_inference_early_exit": t_ee, "per_inference_no_exit": t_ne,
            "saving": 1.0 - t_ee / t_ne if t_ne else None, "per_stage": _stage_instructions(ee, None)}
    s = fw_ee.sizes
    result["memory"] = {
        "flash_budget": s.flash_budget, "ram_budget": s.ram_budget,
        "flash": s.flash, "flash_code": s.flash_code, "flash_weights": s.flash_weights,
        "flash_other_rodata": s.flash_rodata - s.flash_weights, "ram": s.ram, "arena": s.arena,
        "arena_kernel_scratch": s.arena_scratch, "kernel_static_scratch": s.kernel_static,
        "ram_data_bss_other": s.ram_data + s.ram_bss - s.arena, "stack": s.ram_stack,
        "stack_used": max(ee.summary.get("stack", 0), ne.summary.get("stack", 0)),
        "nvm_reserved": b.nvm.size, "baked_inputs": int(x_q.size),
        "no_exit_flash": fw_ne.sizes.flash, "no_exit_ram": fw_ne.sizes.ram,
    }
    if check_oracle:
        result["host"] = compare_with_host(run, fw_ee, ee)
        if policy.get("policy") == "confidence":
            outs, conf_outs = oracle_confidence(run, x_q, policy)
        else:
            outs, conf_outs = oracle_outputs(run, x_q), None
        dec = oracle_decisions(outs, policy, man, conf_outs)
        result["oracle"] = {"early_exit": compare_with_oracle(ee, outs, dec),
                            "no_exit": compare_with_oracle(ne, outs, _final_only(outs, man))}
        result["curve"] = _curve(outs, y, man, result)
        from tinyexit.policy.decisions import argmax_first
        result["accuracy"]["per_exit_all_inputs"] = {
            e["name"]: float(np.mean(argmax_first(o) == np.asarray(y))) for e, o in zip(exits, outs)}
    return result


def _final_only(outs, man):
    from tinyexit.policy.decisions import MaxSoftmax
    return MaxSoftmax(2.0).evaluate_q(outs, [e["output"] for e in man["exits"]],
                                           [e["macs_to_exit"] for e in man["exits"]])


def _curve(outs, y, man, result) -> dict | None:
    """Accuracy against mean instructions over every int8 threshold (oracle decisions; cost of ending at
    each exit = the exact mean measured on the board). None when an exit's cost was not measured."""
    ins = result.get("instructions")
    if not ins or len(man["exits"]) != 2 or result["policy"]["policy"] != "max_softmax":
        return None
    from tinyexit.policy.decisions import argmax_first
    cost = [ins["per_exit_taken"][e["name"]] for e in man["exits"]]
    if any(c is None for c in cost):
        return None
    y = np.asarray(y)
    top = outs[0].astype(np.int64).max(axis=1)
    p0, p1 = argmax_first(outs[0]), argmax_first(outs[1])
    pts = []
    for t in range(128, -129, -1):  # 128: never exit early
        take = top >= t
        acc = float(np.mean(np.where(take, p0, p1) == y))
        pts.append({"threshold_q": t, "exit_rate": float(take.mean()), "accuracy": acc,
                    "instructions": float(np.mean(np.where(take, cost[0], cost[1])))})
    return {"points": pts, "cost_per_exit": cost}


def table(r: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    where = f"{r['board']} (emulated on QEMU {r['machine']})" if r["emulated"] else r["board"]
    lines = [f"tinyexit bench: {r['run']} on {where}, {r['inputs']} test inputs, policy "
             f"{r['policy']['policy']} threshold {r['policy']['threshold']} (threshold_q {r['policy']['threshold_q']})",
             f"{'':<30}{'early exit':>16}{'no exit':>16}{'saving':>10}",
             f"{'accuracy':<30}{pct(r['accuracy']['early_exit']):>16}{pct(r['accuracy']['no_exit']):>16}",
             f"{'exit rate':<30}" + ", ".join(f"{k} {pct(v)}" for k, v in r["exit_rate"].items())]
    if "per_exit_all_inputs" in r["accuracy"]:
        lines.append(f"{'accuracy of each exit (all)':<30}" + ", ".join(
            f"{k} {pct(v)}" for k, v in r["accuracy"]["per_exit_all_inputs"].items()))
    lines.append(f"{'mean MACs / inference':<30}{r['macs']['mean_early_exit']:>16,.0f}{r['macs']['no_exit']:>16,}"
                 f"{pct(r['macs']['saving']):>10}")
    ins = r.get("instructions")
    if ins:
        lines.append(f"{'instructions / inference':<30}{ins['per_inference_early_exit']:>16,.0f}"
                     f"{ins['per_inference_no_exit']:>16,.0f}{pct(ins['saving']):>10}")
        lines.append(f"{'  per exit taken (exact)':<30}" + ", ".join(
            f"{k} {v:,.0f}" for k, v in ins["per_exit_taken"].items() if v is not None))
        lines.append(f"{'  per stage (exact, mean)':<30}" + ", ".join(
            f"{k} {v['mean_instructions']:,.0f}" for k, v in ins["per_stage"].items() if v["mean_instructions"]))
    if "estimated_cycles" in r:
        c = r["estimated_cycles"]
        lines.append(f"{'est. cycles / inference':<30}{c['per_inference_early_exit']:>16,.0f}"
                     f"{c['per_inference_no_exit']:>16,.0f}{pct(c['saving']):>10}  (estimated cycles, zero wait "
                     f"states, no flash wait states)")
        st = (r.get("instructions") or {}).get("per_stage", {})
        if any("mean_estimated_cycles" in v for v in st.values()):
            lines.append(f"{'  per stage (est. cycles)':<30}" + ", ".join(
                f"{k} {v['mean_estimated_cycles']:,.0f}" for k, v in st.items() if "mean_estimated_cycles" in v))
        if "strict_per_inference_no_exit" in c:
            se, sn = c["strict_per_inference_early_exit"], c["strict_per_inference_no_exit"]
            lines.append(f"{'  strict (address deps)':<30}{se:>16,.0f}{sn:>16,.0f}"
                         f"{pct(1.0 - se / sn if sn else None):>10}  (a load/store whose address uses the load just "
                         f"before it is not pipelined)")
    for key in ("cycles", "ticks"):
        if key in r:
            c = r[key]
            lines.append(f"{key + ' / inference':<30}{c['per_inference_early_exit']:>16,.0f}"
                         f"{c['per_inference_no_exit']:>16,.0f}{pct(c['saving']):>10}")
    m = r["memory"]
    lines.append(f"{'flash':<30}{m['flash']:>16,}  of {m['flash_budget']:,} B: code {m['flash_code']:,}, "
                 f"weights {m['flash_weights']:,}, other rodata {m['flash_other_rodata']:,} "
                 f"(incl. {m['baked_inputs']:,} B of baked inputs)")
    lines.append(f"{'RAM':<30}{m['ram']:>16,}  of {m['ram_budget']:,} B: arena {m['arena']:,} "
                 f"(kernel scratch up to {m.get('arena_kernel_scratch', 0):,} inside), other data/bss "
                 f"{m['ram_data_bss_other']:,} (static kernel scratch {m.get('kernel_static_scratch', 0):,}), "
                 f"stack {m['stack']:,} "
                 f"(used {m['stack_used']:,}); NVM reserved {m['nvm_reserved']:,}")
    if "host" in r:
        lines.append(f"{'firmware == host build (gcc)':<30}{r['host']['identical']:>10}/{r['host']['inputs']}")
    if "oracle" in r:
        o = r["oracle"]
        lines.append(f"{'firmware == oracle (TFLM+policy)':<30}{o['early_exit']['identical']:>10}/{o['early_exit']['inputs']}"
                     f"{o['no_exit']['identical']:>10}/{o['no_exit']['inputs']}")
    return "\n".join(lines)


def _plot(path: Path, r: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ins = r.get("instructions")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if ins:
        x_ee, x_ne, xlabel, scale = ins["per_inference_early_exit"], ins["per_inference_no_exit"], \
            "instructions per inference (millions, exact)", 1e-6
    else:
        x_ee, x_ne, xlabel, scale = r["macs"]["mean_early_exit"], r["macs"]["no_exit"], "MACs per inference (millions)", 1e-6
    curve = r.get("curve")
    if curve:
        pts = curve["points"]
        ax.plot([p["instructions"] * scale for p in pts], [100 * p["accuracy"] for p in pts], ".-", ms=2, lw=1,
                color="0.6", label="threshold sweep (oracle decisions, measured exit costs)")
    ax.plot([x_ne * scale], [100 * r["accuracy"]["no_exit"]], "s", color="C1", label="no early exit (firmware)")
    ax.plot([x_ee * scale], [100 * r["accuracy"]["early_exit"]], "o", color="C0",
            label="early exit, calibrated policy (firmware)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy on the test inputs (%)")
    ax.set_title(f"{Path(r['run']).name} on {r['board']}{' (QEMU)' if r['emulated'] else ''}, {r['inputs']} inputs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
