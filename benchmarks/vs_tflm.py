"""tinyexit beside TensorFlow Lite Micro on the conformance models: instructions, estimated Cortex-M4 cycles,
cycles per MAC, arena, scratch and code, with the ratios.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/vs_tflm.py [--model kws] [--model resnet] [--inputs 4] [--json OUT]
                                                          [--d95b1ac SRC] [--plan layers|fused|fused2|both|all]
                                                          [--run RUN] [--no-wide] [--vww]

--plan: the memory plan(s) measured (generate(plan=...)): layers (every step's whole output in the arena), fused
(conv chains row-streamed where that plans a smaller arena, tinyexit.codegen.stream_plan), fused2 (the same, two
rows per kernel call on odd widths), both (default: layers and fused) or all three. "tinyexit" is the first,
"tinyexit_fused" / "tinyexit_fused2" the others; each says which plan its library used.

--run RUN: also the run's segments and exit heads (its quant manifest), each measured alone like the conformance
models (layer plan); TFLM has no figures for them.

--vww: also tinyexit's `vww` network (models/vww-mobilenet.yaml's MobileNetV1-0.25 at 96x96, without its exit;
untrained, see vww_model) under the plans of --plan, its RAM (arena + static kernel scratch) beside TFLM's arena
for the same .tflite, measured here with the host tflite_micro package: its allocation report (recording
allocator: total = activations + persistent) and, as a check, the smallest arena_size its interpreter
allocates and runs with (bisection). `--model none --vww` measures only it.

--no-wide: also the layer plan with the wide CONV_2D path left out (generate(wide=False), `tinyexit generate
--no-wide`): its weights in flash (the linked image's op<step>_ constants) and cycles beside the default's.

--d95b1ac SRC: the cross-check of the cycle model. SRC is a tree of commit d95b1ac (`git archive d95b1ac |
tar -x -C SRC`); its generator (run with PYTHONPATH=SRC) builds the kws library, this tree's plugin measures it,
and the cycles must land within 5 % of ANCHORS.md's independent estimate for that commit.

tinyexit: the model's library generated with the cortex_m4 kernels, run on the emulated Cortex-M4 (QEMU
mps2-an386, the machine that emulates the nrf52840 board) with the instruction-count plugin, one window per
tx_invoke; every output checked against tflite_micro. Cycles are ESTIMATED: Cortex-M4 TRM timings per executed
instruction, zero wait states, no flash wait states (tinyexit/targets/insn_count_plugin.c states the rules;
they are the rules of the independent estimate in ANCHORS.md, so the figures compare). Beside them, tinyexit's
strict estimate (cycles_strict): the same rules, but a load/store whose address register is the result of the
single load just before it (or that follows STR with a register offset) is not pipelined, as the TRM's load/store
timings say; TFLM has no strict figure (ANCHORS.md's were computed without address dependencies).

TFLM: the figures of ../shared/ANCHORS.md (TFLM 90b983c, CMSIS-NN 4ab83cc, measured in this same emulator with
the same instruction counting, window = one Invoke; TFLM itself cannot be built here), copied into TFLM below.
Inputs: numpy default_rng(0) int8, as in ANCHORS.md; the cycle table there is for the first input.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.codegen import generate, read_model
from tinyexit.codegen.measure import section_sizes
from tinyexit.conformance import emulated_outputs, tflm_outputs

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
ANCHORS = REPO.parent / "shared" / "ANCHORS.md"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}

# From ../shared/ANCHORS.md, "TFLM in our emulator" (instructions of one Invoke, measured 2026-11-22; arena =
# arena_used_bytes; code = TFLM .text) and "Estimated Cortex-M4 cycles" (2026-12-01, first of 4 inputs, the
# same cycle rules as this project's plugin). tinyexit_d95b1ac: the estimate of tinyexit's own code at commit
# d95b1ac, the cross-check for the plugin's cycle model.
TFLM = {
    "kws": {"macs": 2_656_768,
            "tflm_reference": {"instructions": 43_040_226, "arena": 22_772, "code": 39_964, "cycles": 65_348_094},
            "tflm_cmsis_nn": {"instructions": 7_697_362, "arena": 22_820, "code": 82_852, "code_int8_only": 52_084,
                              "cycles": 9_253_034},
            "tinyexit_d95b1ac": {"instructions": 4_499_838, "cycles": 6_602_400}},
    "resnet": {"macs": 12_501_632,
               "tflm_reference": {"instructions": 107_405_837, "arena": 54_340, "code": 44_376,
                                  "cycles": 171_457_959},
               "tflm_cmsis_nn": {"instructions": 29_864_657, "arena": 54_996, "code": 77_712,
                                 "code_int8_only": 49_856, "cycles": 36_879_950},
               "tinyexit_d95b1ac": {"instructions": 17_589_835, "cycles": 25_406_638}},
}
NOTE = ("cycles: estimated Cortex-M4 cycles, TRM timings, zero wait states, no flash wait states; TFLM figures "
        f"from {ANCHORS.name} (same emulator, same instruction counting)")


def linked_weights(elf: Path) -> int:
    """Flash bytes of the model's constants in a linked image (after --gc-sections): the read-only symbols
    the generator names op<step>_... (weights, biases, multipliers, tables, wide streams)."""
    import re
    import subprocess
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], check=True, capture_output=True, text=True).stdout
    return sum(int(f[1], 16) for f in (line.split() for line in out.splitlines())
               if len(f) == 4 and f[2] in "rR" and re.match(r"op\d+_", f[3]))


def measure(key: str, work: Path, n_inputs: int, plan: str = "layers", path: Path | None = None,
            wide: bool = True) -> dict:
    """tinyexit's figures for one model (a conformance model, or `path`; cortex_m4 kernels, memory plan `plan`,
    the wide conv path allowed or not), outputs checked against tflite_micro."""
    path = path or CONFORMANCE / MODELS.get(key, "")
    label = plan if wide else f"{plan}, no wide"
    lib = work / (f"lib_{key}" if plan == "layers" else f"lib_{key}_{plan}") if wide else work / f"lib_{key}_nowide"
    rep = generate({key: path}, lib, kernels="cortex_m4", compare_tflm=False, plan=plan, wide=wide)
    kernel_sources = sorted(p.name for p in lib.glob("tx_*.c")
                            if p.name != "tx_runtime.c" and not p.name.startswith("tx_model_"))
    _, sizes = section_sizes(lib, kernel_sources)
    g = read_model(path)
    x = np.random.default_rng(0).integers(-128, 128, size=(n_inputs, *g.input.shape[1:])).astype(np.int8)
    fw = work / f"fw_{key}_{plan}{'' if wide else '_nowide'}"
    fw.mkdir(parents=True, exist_ok=True)
    got, insns, cycles, strict = emulated_outputs(lib, key, x, work=fw, cycles=True, strict=True)
    exact = bool(np.array_equal(got, tflm_outputs(path, x)))
    fig = rep.models[key]
    return {"label": label, "wide": wide, "weights_generated": rep.weight_bytes,
            "weights_flash": linked_weights(next(fw.rglob("*.elf"))), "instructions": float(np.mean(insns)), "cycles": float(np.mean(cycles)),
            "instructions_first_input": int(insns[0]), "cycles_first_input": int(cycles[0]),
            "cycles_strict": float(np.mean(strict)), "cycles_strict_first_input": int(strict[0]),
            "arena": fig.arena_bytes, "scratch": sum(v["bss"] + v["data"] for v in sizes.values()),
            "arena_kernel_scratch": rep.scratch_bytes, "code": rep.code_bytes, "macs": fig.macs,
            "inputs": n_inputs, "identical_to_tflite_micro": exact, "plan": fig.plan, "chains": fig.chains}


def report(key: str, t: dict, others: dict | None = None) -> dict:
    a = TFLM[key]
    macs = a["macs"]
    if t["macs"] != macs:
        print(f"warning: {key}: tinyexit counts {t['macs']:,} MACs, ANCHORS.md {macs:,}")
    cm, ref, old = a["tflm_cmsis_nn"], a["tflm_reference"], a["tinyexit_d95b1ac"]
    print(f"\n== {MODELS[key]} ({macs:,} MACs; {t['inputs']} inputs, outputs identical to tflite_micro: "
          f"{t['identical_to_tflite_micro']})")
    print(f"{'':<26}{'instructions':>13}{'/MAC':>7}{'est. cycles':>13}{'/MAC':>7}{'cyc/ins':>8}"
          f"{'arena':>8}{'scratch':>8}{'code':>8}")
    rows = [(f"tinyexit ({t['label']})", t["instructions"], t["cycles"], t["arena"], t["scratch"], t["code"])]
    for fused in (others or {}).values():
        rows.append((f"tinyexit ({fused['label']})", fused["instructions"], fused["cycles"], fused["arena"],
                     fused["scratch"], fused["code"]))
    rows += [
            ("TFLM + CMSIS-NN", cm["instructions"], cm["cycles"], cm["arena"], None, cm["code"]),
            ("TFLM reference", ref["instructions"], ref["cycles"], ref["arena"], None, ref["code"])]
    for name, i, c, ar, sc, co in rows:
        print(f"{name:<26}{i:>13,.0f}{i / macs:>7.3f}{c:>13,.0f}{c / macs:>7.3f}{c / i:>8.3f}{ar:>8,}"
              f"{'-' if sc is None else f'{sc:,}':>8}{co:>8,}")
    ratios = {"instructions_vs_cmsis_nn": t["instructions"] / cm["instructions"],
              "cycles_vs_cmsis_nn": t["cycles"] / cm["cycles"],
              "instructions_vs_reference": t["instructions"] / ref["instructions"],
              "cycles_vs_reference": t["cycles"] / ref["cycles"],
              "arena_vs_cmsis_nn": t["arena"] / cm["arena"],
              "ram_vs_cmsis_nn": (t["arena"] + t["scratch"]) / cm["arena"]}
    print("tinyexit / TFLM+CMSIS-NN: " + ", ".join(f"{k.split('_vs_')[0]} {v:.3f}x"
                                                   for k, v in ratios.items() if k.endswith("cmsis_nn")))
    print(f"tinyexit / TFLM reference: instructions {ratios['instructions_vs_reference']:.3f}x, "
          f"cycles {ratios['cycles_vs_reference']:.3f}x")
    cs = t["cycles_strict"]
    ratios["cycles_strict_vs_cmsis_nn"] = cs / cm["cycles"]
    print(f"tinyexit strict estimate (a load/store whose address uses the load just before it is not pipelined): "
          f"{cs:,.0f} cycles, {cs / macs:.3f}/MAC, {100 * (cs / t['cycles'] - 1):+.2f} % vs the default estimate; "
          f"/ TFLM+CMSIS-NN (default rules) {ratios['cycles_strict_vs_cmsis_nn']:.3f}x")
    print(f"tinyexit RAM: arena {t['arena']:,} B (kernel scratch up to {t['arena_kernel_scratch']:,} B inside) + "
          f"static kernel scratch {t['scratch']:,} B; code = library code without weights")
    print(f"ANCHORS.md's estimate of tinyexit d95b1ac: {old['instructions']:,} instructions, {old['cycles']:,} "
          f"cycles ({old['cycles'] / macs:.3f}/MAC); this build, first input: {t['instructions_first_input']:,} / "
          f"{t['cycles_first_input']:,}")
    out = {"macs": macs, "tinyexit": t, "tflm_cmsis_nn": cm, "tflm_reference": ref,
           "tinyexit_d95b1ac_anchor": old, "ratios": ratios}
    print(f"weights in flash (linked image, {t['label']}): {t['weights_flash']:,} B")
    for plan, fused in (others or {}).items():
        out[f"tinyexit_{plan}"] = fused
        ratio = out[f"{plan}_vs_layers"] = {k: fused[k] / t[k] for k in ("instructions", "cycles", "arena", "code",
                                                                          "weights_flash")}
        print(f"{fused['label']} plan ({'; '.join(fused['chains']) or 'no chain planned less: layer by layer'}), "
              f"outputs identical to tflite_micro: {fused['identical_to_tflite_micro']}; / the layer plan: " +
              ", ".join(f"{k} {v:.3f}x" for k, v in ratio.items()) +
              f"; RAM (arena + static scratch) {fused['arena'] + fused['scratch']:,} B vs "
              f"{t['arena'] + t['scratch']:,} B; weights in flash {fused['weights_flash']:,} B vs "
              f"{t['weights_flash']:,} B")
    return out


GEN_D95 = """
import sys
from pathlib import Path
from tinyexit.codegen import generate
generate({"kws": Path(sys.argv[1])}, Path(sys.argv[2]), kernels="cortex_m4", compare_tflm=False)
"""


def check_d95b1ac(src: Path, work: Path, n_inputs: int) -> dict:
    """Commit d95b1ac's kws library (generated by that commit's code) measured with this tree's plugin, against
    ANCHORS.md's independent estimate for it (first input): the cycle model's cross-check."""
    import os
    import subprocess
    lib, fw = (work / "lib_d95b1ac").resolve(), work / "fw_d95b1ac"
    fw.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", GEN_D95, str(CONFORMANCE / MODELS["kws"]), str(lib)], check=True,
                   env={**os.environ, "PYTHONPATH": str(src)}, cwd=src, stdout=subprocess.DEVNULL)  # cwd: sys.path[0]
    path = CONFORMANCE / MODELS["kws"]
    x = np.random.default_rng(0).integers(-128, 128, size=(n_inputs, *read_model(path).input.shape[1:]))
    got, insns, cycles = emulated_outputs(lib, "kws", x.astype(np.int8), work=fw, cycles=True)
    old = TFLM["kws"]["tinyexit_d95b1ac"]
    d_i, d_c = insns[0] / old["instructions"] - 1, cycles[0] / old["cycles"] - 1
    ok = abs(d_c) <= 0.05
    print(f"\n== cross-check, tinyexit d95b1ac kws_ref_model (first input): {insns[0]:,} instructions "
          f"({100 * d_i:+.3f} % vs ANCHORS.md), {cycles[0]:,} est. cycles ({100 * d_c:+.3f} % vs ANCHORS.md "
          f"{old['cycles']:,}): {'within' if ok else 'OUTSIDE'} 5 %; outputs identical to tflite_micro: "
          f"{np.array_equal(got, tflm_outputs(path, x.astype(np.int8)))}")
    # the generator that ran must be d95b1ac's (its kws library differs from today's)
    def sources(d: Path) -> list[bytes]:
        return [p.read_bytes() for p in sorted(d.glob("tx_*.c"))]
    if (work / "lib_kws").is_dir() and sources(lib) == sources(work / "lib_kws"):
        print("warning: the d95b1ac library equals this tree's; was SRC the d95b1ac tree?")
    return {"instructions": int(insns[0]), "cycles": int(cycles[0]), "anchor": old,
            "instructions_diff": d_i, "cycles_diff": d_c, "within_5_percent": ok}


def run_segments(run: str, work: Path, n_inputs: int) -> dict:
    """Each segment and exit head of a run's quant manifest measured alone, as the conformance models are.
    TFLM has no figures for them (ANCHORS.md measured only the conformance models; TFLM cannot be built here)."""
    from tinyexit.run import Run
    models = Run(run).quant_models()
    res = {name: measure(name, work, n_inputs, path=path) for name, path in models.items()}
    print(f"\n== {run}: its segments and exit heads, each alone ({n_inputs} inputs; no TFLM figures: ANCHORS.md "
          "measured only the conformance models)")
    print(f"{'':<12}{'MACs':>11}{'instructions':>13}{'/MAC':>7}{'est. cycles':>13}{'/MAC':>7}{'arena':>8}"
          f"{'scratch':>8}{'code':>8}  == tflite_micro")
    for name, t in res.items():
        m = max(t["macs"], 1)
        print(f"{name:<12}{t['macs']:>11,}{t['instructions']:>13,.0f}{t['instructions'] / m:>7.3f}"
              f"{t['cycles']:>13,.0f}{t['cycles'] / m:>7.3f}{t['arena']:>8,}{t['scratch']:>8,}{t['code']:>8,}"
              f"  {t['identical_to_tflite_micro']}")
    return res


def vww_model(path: Path) -> Path:
    """tinyexit's `vww` recipe network (models/vww-mobilenet.yaml: MobileNetV1-0.25, 96x96x3, 2 classes) without
    its exit, randomly initialised (seed 0), its BatchNorm statistics set by 60 training-mode passes over 32
    random images (else the activations shrink ~100x per block and the int8 model is degenerate), quantized
    by the project's int8 converter (tinyexit.quantize.convert.convert_int8) on those images. Untrained: the
    figures are memory and cycles, which do not depend on the weights' values."""
    import keras

    from tinyexit.models.mobilenet import MobileNetConfig, build_mobilenet_v1
    from tinyexit.quantize.convert import convert_int8

    keras.utils.set_random_seed(0)
    model = build_mobilenet_v1(MobileNetConfig(exits_after=()))
    x = np.random.default_rng(0).random((32, 96, 96, 3)).astype(np.float32)
    for _ in range(60):
        model(x, training=True)
    path.write_bytes(convert_int8(model, x))
    return path


def tflm_arena_need(path: Path, lo: int = 1024, hi: int = 1 << 22) -> int:
    """The smallest arena (bytes, to 16) with which tflite_micro's interpreter (host build) allocates the model
    and runs one inference: bisection over Interpreter(arena_size=...)."""
    from tflite_micro.python.tflite_micro import runtime

    x = np.zeros(read_model(path).input.shape, np.int8)

    def fits(n: int) -> bool:
        try:
            it = runtime.Interpreter.from_file(str(path), arena_size=n)
            it.set_input(x, 0)
            it.invoke()
            return True
        except RuntimeError:
            return False
    import os
    saved = os.dup(2)   # the failed allocations print on stderr (MicroPrintf): silence them
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            if not fits(hi):
                raise SystemExit(f"tflite_micro does not run {path.name} even with a {hi:,} B arena")
            while hi - lo > 16:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return hi


def run_vww(work: Path, n_inputs: int, plans: list[str]) -> dict:
    """tinyexit's RAM (arena + static kernel scratch) for the vww network under each plan, beside TFLM's arena
    for the same .tflite (measured here, host tflite_micro: its allocation report and the bisected need)."""
    from tinyexit.codegen.measure import tflm_arena_bytes

    path = vww_model(work / "vww.tflite")
    report_ = tflm_arena_bytes(path) or {}
    need = tflm_arena_need(path)
    res = {p: measure("vww", work, n_inputs, p, path=path) for p in plans}
    print(f"\n== vww: tinyexit's MobileNetV1-0.25 96x96x3 (untrained, BN statistics set, int8 by the project's "
          f"converter; {n_inputs} inputs) beside TFLM's arena for the same .tflite")
    print(f"TFLM (host tflite_micro, 64-bit pointers): allocation report total {report_.get('total', 0):,} B "
          f"(activations {report_.get('head', 0):,} B + persistent {report_.get('tail', 0):,} B); smallest arena "
          f"that allocates and runs (bisection) {need:,} B")
    print(f"{'plan':<10}{'arena':>9}{'static':>8}{'RAM':>9}{'/ TFLM total':>14}{'/ TFLM activ.':>15}"
          f"{'est. cycles':>13}  == tflite_micro  chains")
    for p, t in res.items():
        ram = t["arena"] + t["scratch"]
        t["ram"], t["ram_vs_tflm_total"] = ram, ram / report_["total"] if report_ else None
        print(f"{t['plan']:<10}{t['arena']:>9,}{t['scratch']:>8,}{ram:>9,}"
              f"{ram / report_.get('total', need):>13.3f}x{ram / report_.get('head', need):>14.3f}x"
              f"{t['cycles']:>13,.0f}  {t['identical_to_tflite_micro']}  {'; '.join(t['chains']) or '-'}")
    return {"tflm_host": {**report_, "bisected_need": need}, "macs": res[plans[0]]["macs"], "tinyexit": res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, "none"], action="append",
                    help="conformance model(s) measured (default: all; none with --vww alone: --model none)")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write every figure as JSON")
    ap.add_argument("--d95b1ac", type=Path, help="a tree of commit d95b1ac: cross-check the cycle model on it")
    ap.add_argument("--plan", choices=("layers", "fused", "fused2", "both", "all"), default="both",
                    help="memory plan(s) measured (default both)")
    ap.add_argument("--run", help="also measure this run's segments and exit heads, each alone")
    ap.add_argument("--vww", action="store_true",
                    help="also tinyexit's vww MobileNetV1-0.25 (96x96) under the plans asked for, beside TFLM's "
                         "arena for it (measured here)")
    ap.add_argument("--no-wide", action="store_true",
                    help="also measure the layer plan without the wide conv path (generate(wide=False)): "
                         "weights in flash and cycles with and without")
    args = ap.parse_args()
    print(NOTE)
    doc = {"note": NOTE, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for key in [k for k in args.model or list(MODELS) if k != "none"]:
            plans = {"both": ["layers", "fused"], "all": ["layers", "fused", "fused2"]}.get(args.plan, [args.plan])
            first = measure(key, Path(tmp), args.inputs, plans[0])
            others = {p: measure(key, Path(tmp), args.inputs, p) for p in plans[1:]}
            if args.no_wide:
                others["nowide"] = measure(key, Path(tmp), args.inputs, "layers", wide=False)
            doc["models"][MODELS[key].removesuffix(".tflite")] = report(key, first, others)
        if args.vww:
            plans = {"both": ["layers", "fused"], "all": ["layers", "fused", "fused2"]}.get(args.plan, [args.plan])
            doc["vww"] = run_vww(Path(tmp), args.inputs, plans)
        if args.run:
            doc["run_segments"] = {"run": args.run, "models": run_segments(args.run, Path(tmp), args.inputs)}
        if args.d95b1ac:
            doc["cross_check_d95b1ac"] = check_d95b1ac(args.d95b1ac, Path(tmp), args.inputs)
    ok = all(m[k]["identical_to_tflite_micro"] for m in doc["models"].values()
             for k in ("tinyexit", "tinyexit_fused", "tinyexit_fused2", "tinyexit_nowide") if k in m)
    ok &= all(m["identical_to_tflite_micro"] for m in doc.get("run_segments", {}).get("models", {}).values())
    ok &= all(m["identical_to_tflite_micro"] for m in doc.get("vww", {}).get("tinyexit", {}).values())
    ok &= doc.get("cross_check_d95b1ac", {}).get("within_5_percent", True)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nall outputs identical to tflite_micro: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
