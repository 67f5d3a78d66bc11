"""`tinyexit profile`: where a model's time and memory go, layer by layer, on the emulated board.

For a .tflite (or every segment, exit head and confidence model of a run's library) the library is generated
with the board's kernel variant into a work folder (a run is never written) and every model is run twice on
the board's emulator (QEMU + the instruction-count plugin, `conformance.emulated_outputs`, the path the
benchmarks use): once with one window per inference (tx_invoke: the model's total, the figure of
benchmarks/vs_tflm.py) and once with one window per step. Both outputs are checked against tflite_micro.

Per step: MACs (the op classes' `macs()`, as `codegen.reader.count_macs`), exact instructions, ESTIMATED
Cortex-M4 cycles (TRM timings, zero wait states, no flash wait states: insn_count_plugin.c), cycles per MAC,
the arena ranges of its inputs and output, its scratch (in-place ring + kernel work space) and weight bytes;
the memory plan as tensor rectangles (`codegen.plan.memory_map`). Totals: the whole-inference window; the
steps add up to it but for the `overhead` row (tx_invoke's input copy, step loop and output copy, less the
per-step windows' own call sequence).

    doc = profile("model.tflite", "nrf52840")      # -> dict (the JSON), print(table(doc)), plot(doc, "p.png")
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from tinyexit.errors import TinyexitError

NOTE = ("instructions: exact (QEMU instruction-count plugin); cycles: ESTIMATED Cortex-M4 cycles, TRM timings, "
        "zero wait states, no flash wait states; strict: the same, but a load/store whose address uses the load "
        "just before it is not pipelined; per step: one window per step, the mean over the inputs")


def _sources(source) -> tuple[dict[str, Path], list, str]:
    """({model name: .tflite}, the chain, "run" | "tflite") of a run directory or a .tflite file."""
    from tinyexit.codegen import read_model
    from tinyexit.run import Run

    p = Path(source)
    if p.is_dir():
        run = Run(p)
        if not run.is_quantized():
            raise TinyexitError(f"'{p}' is a folder but not a quantized run (no quant/manifest.json); give a .tflite "
                                f"or run `tinyexit quantize {p}` first")
        return run.library_models(), run.library_chain(), "run"
    if not p.exists():
        raise TinyexitError(f"'{p}' does not exist; give a run directory or a .tflite model")
    read_model(p)   # a one-line TinyexitError for a file that is not an int8 model tinyexit reads
    return {p.stem: p}, [], "tflite"


def _board(board: str):
    """The board's emulated variant: instruction counts exist only in the emulator."""
    from tinyexit.boards import BoardError, load_board
    from tinyexit.targets import get_runner

    try:
        b = load_board(board, emulate=True)
    except BoardError as e:
        if "cannot be emulated" not in str(e):
            raise
        raise TinyexitError(f"{e} `tinyexit profile` counts instructions in the emulator (QEMU), the only place "
                            f"they can be counted") from None
    get_runner(b, None, needs=("instruction_windows", "cycle_estimate"))
    return b


def _fresh(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _per_mac(n: float, macs: int) -> float | None:
    return n / macs if macs else None


def profile(source, board: str = "nrf52840", *, inputs: int = 4, seed: int = 0, work=None,
            timeout: float = 600.0, progress: bool = True) -> dict:
    """Profile a run directory or a .tflite on `board`'s emulator (see the module doc). `inputs`: random int8
    inputs (numpy default_rng(seed), as benchmarks/vs_tflm.py); `work`: keep the library and firmware there
    (default: a temporary folder). Returns the document `tinyexit profile --json` writes."""
    from tqdm import tqdm

    from tinyexit.codegen import generate
    from tinyexit.conformance import emulated_outputs, tflm_outputs

    if inputs < 1:
        raise TinyexitError(f"--inputs must be at least 1, got {inputs}")
    models, chain, kind = _sources(source)
    b = _board(board)
    doc = {"source": str(source), "kind": kind, "board": b.name, "machine": b.qemu_machine, "kernels": b.kernels,
           "inputs": inputs, "seed": seed, "note": NOTE, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(work) if work else Path(tmp)
        w.mkdir(parents=True, exist_ok=True)
        rep = generate(models, w / "lib", kernels=b.kernels, compare_tflm=False, chain=chain)
        doc["library"] = {"arena_bytes": rep.arena_bytes, "scratch_bytes": rep.scratch_bytes,
                          "static_scratch_bytes": rep.static_scratch_bytes, "ram_bytes": rep.ram_bytes,
                          "weight_bytes": rep.weight_bytes, "code_bytes": rep.code_bytes, "chained": rep.chained}
        rng = np.random.default_rng(seed)
        for k, (name, path) in enumerate(tqdm(models.items(), desc="profile", unit="model", disable=not progress)):
            fig = rep.models[name]
            x = rng.integers(-128, 128, size=(inputs, fig.input_size)).astype(np.int8)
            want = tflm_outputs(path, x)
            got, insns, cycles, strict = emulated_outputs(w / "lib", name, x, board=board, cycles=True, strict=True,
                                                          timeout=timeout, work=_fresh(w / f"fw{k}_whole"))
            got_s, s_insns, s_cycles, s_strict = emulated_outputs(
                w / "lib", name, x, board=board, cycles=True, strict=True, per_step=True, timeout=timeout,
                work=_fresh(w / f"fw{k}_steps"))
            n = len(fig.ops)
            si = np.asarray(s_insns, float).reshape(inputs, n).mean(0)
            sc = np.asarray(s_cycles, float).reshape(inputs, n).mean(0)
            ss = np.asarray(s_strict, float).reshape(inputs, n).mean(0)
            mem = fig.memory
            steps = [{"step": i, "op": op, "macs": macs, "instructions": float(si[i]), "cycles": float(sc[i]),
                      "cycles_strict": float(ss[i]),
                      "cycles_per_mac": _per_mac(sc[i], macs), "output": m["output"][1:], "inputs": [r[1:] for r in m["inputs"]],
                      "scratch": m["scratch"], "weight_bytes": m["weight_bytes"]}
                     for i, (op, macs, m) in enumerate(zip(fig.ops, fig.step_macs, mem["steps"]))]
            whole_i, whole_c = float(np.mean(insns)), float(np.mean(cycles))
            doc["models"][name] = {
                "source": str(path), "macs": fig.macs, "instructions": whole_i, "cycles": whole_c,
                "cycles_per_mac": _per_mac(whole_c, fig.macs), "cycles_strict": float(np.mean(strict)),
                "instructions_per_input": [int(v) for v in insns], "cycles_per_input": [int(v) for v in cycles],
                "step_instructions_per_input": np.asarray(s_insns, int).reshape(inputs, n).tolist(),
                "overhead_instructions": whole_i - float(si.sum()), "overhead_cycles": whole_c - float(sc.sum()),
                "arena_bytes": fig.arena_bytes, "scratch_bytes": fig.scratch_bytes, "weight_bytes": fig.weight_bytes,
                "identical_to_tflite_micro": bool(np.array_equal(got, want) and np.array_equal(got_s, want)),
                "steps": steps, "memory": mem}
    doc["identical_to_tflite_micro"] = all(m["identical_to_tflite_micro"] for m in doc["models"].values())
    return doc


def _rng(r) -> str:
    return f"{r[0]}+{r[1]}" if r and r[1] else "-"


def table(doc: dict) -> str:
    """The per-layer table and the totals, as text."""
    lines = [f"{doc['source']} on {doc['board']} (emulated: {doc['machine']}; kernels {doc['kernels']}; "
             f"{doc['inputs']} random inputs)", doc["note"]]
    w = max([26] + [len(f"{s['step']}: {s['op']}") + 1 for m in doc["models"].values() for s in m["steps"]])
    head = (f"{'step':<{w}}{'MACs':>11}{'instr.':>12}{'est. cycles':>13}{'cyc/MAC':>8}{'%cyc':>6}{'strict':>12}  "
            f"{'output':<13}{'inputs':<26}{'scratch':<12}{'weights':>8}")
    tot = {"macs": 0, "instructions": 0.0, "cycles": 0.0}
    for name, m in doc["models"].items():
        lines += ["", f"== {name}: {m['macs']:,} MACs, arena {m['arena_bytes']:,} B (scratch up to "
                      f"{m['scratch_bytes']:,} B inside), weights {m['weight_bytes']:,} B; outputs identical to "
                      f"tflite_micro: {m['identical_to_tflite_micro']}", head]
        for s in m["steps"]:
            cpm = f"{s['cycles_per_mac']:.2f}" if s["cycles_per_mac"] is not None else "-"
            lines.append(f"{str(s['step']) + ': ' + s['op']:<{w}}{s['macs']:>11,}{s['instructions']:>12,.0f}"
                         f"{s['cycles']:>13,.0f}{cpm:>8}{100 * s['cycles'] / m['cycles']:>6.1f}"
                         f"{s['cycles_strict']:>12,.0f}  "
                         f"{_rng(s['output']):<13}{', '.join(map(_rng, s['inputs'])):<26}{_rng(s['scratch']):<12}"
                         f"{s['weight_bytes']:>8,}")
        lines.append(f"{'overhead (tx_invoke)':<{w}}{'':>11}{m['overhead_instructions']:>12,.0f}"
                     f"{m['overhead_cycles']:>13,.0f}")
        cpm = f"{m['cycles_per_mac']:.3f}" if m["cycles_per_mac"] is not None else "-"
        lines.append(f"{'total (one inference)':<{w}}{m['macs']:>11,}{m['instructions']:>12,.0f}{m['cycles']:>13,.0f}"
                     f"{cpm:>8}{'':>6}{m['cycles_strict']:>12,.0f}")
        for key in tot:
            tot[key] += m[key]
    lib = doc["library"]
    if len(doc["models"]) > 1:
        lines += ["", f"all {len(doc['models'])} models, each once: {tot['macs']:,} MACs, {tot['instructions']:,.0f} "
                      f"instructions, {tot['cycles']:,.0f} est. cycles"]
    static = lib["static_scratch_bytes"]
    lines += ["", f"library: RAM {lib['ram_bytes'] or '-'} B = arena {lib['arena_bytes']:,} B (kernel scratch up to "
                  f"{lib['scratch_bytes']:,} B inside) + static kernel scratch {static if static is not None else '-'} B;"
                  f" weights {lib['weight_bytes']:,} B, code {lib['code_bytes'] or '-'} B"
                  + ("; models chained through the arena" if lib["chained"] else ""),
              "ranges: arena offset+bytes; scratch = in-place ring + kernel work space of the step; overhead: what "
              "the step windows leave out of tx_invoke (input and output copies, which a chained stage of the "
              "firmware skips, and the step loop) less their own call sequence",
              f"all outputs identical to tflite_micro: {doc['identical_to_tflite_micro']}"]
    return "\n".join(lines)


def plot(doc: dict, path) -> None:
    """Two panels: estimated cycles per step (bars), and the memory plan: each tensor as a rectangle of its live
    steps x its arena range (scratch hatched); the models one after another on the step axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tinyexit.io import save_figure

    n_steps = sum(len(m["steps"]) for m in doc["models"].values())
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.28 * n_steps + 3), 8), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    base, top = 0, doc["library"]["arena_bytes"]
    for k, (name, m) in enumerate(doc["models"].items()):
        c = colors[k % len(colors)]
        xs = [base + s["step"] for s in m["steps"]]
        ax1.bar(xs, [s["cycles"] for s in m["steps"]], color=c, label=name)
        for r in m["memory"]["tensors"]:
            ax2.add_patch(Rectangle((base + r["first"] - 0.4, r["offset"]), r["last"] - r["first"] + 0.8, r["bytes"],
                                    facecolor=c, alpha=0.45, edgecolor="black", linewidth=0.5))
        for r in m["memory"]["scratch"]:
            ax2.add_patch(Rectangle((base + r["step"] - 0.4, r["offset"]), 0.8, r["bytes"], facecolor="none",
                                    edgecolor=c, hatch="///", linewidth=0.8))
        base += len(m["steps"])
    ax1.set_ylabel("estimated Cortex-M4 cycles")
    ax1.set_title(f"{Path(doc['source']).name} on {doc['board']} (emulated), kernels {doc['kernels']}")
    ax1.legend(fontsize="small")
    labels = [f"{s['step']}:{s['op']}" for m in doc["models"].values() for s in m["steps"]]
    ax2.set_xticks(range(n_steps))
    ax2.set_xticklabels(labels, rotation=90, fontsize=6)
    ax2.set_xlim(-1, n_steps)
    ax2.set_ylim(0, top * 1.02 or 1)
    ax2.axhline(top, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_ylabel("arena offset (bytes)")
    ax2.set_xlabel("step (tensor lifetime: from the step writing it to the last reading it; hatched: scratch)")
    save_figure(fig, path)
