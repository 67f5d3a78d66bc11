"""`tinyexit compress`: fit an early-exit model to a flash budget.

    compress_run(run_dir, out, CompressConfig(target_kb=..., board=...)) -> report dict

Steps (each one's accuracy per exit, float and int8, and weight bytes are reported):
  1. the sparsity needed for the weight budget (`sparsity_for_budget`: int8 weights stored dense or as
     sparse run lists by the code generator, whichever is smaller per layer, plus biases and requantization
     constants);
  2. magnitude pruning of every Conv2D / DepthwiseConv2D / Dense kernel (backbone and exit heads) with
     tfmot's `prune_low_magnitude` + polynomial decay, `strip_pruning`;
  3. quantization-aware training (tfmot `quantize_apply`, pruning-preserving 8-bit scheme); its int8 model
     is the QAT model converted whole with the activation ranges it learned, then cut at the exit points;
  4. the usual int8 segments (`tinyexit.quantize.quantize_run`, chained pieces checked against the whole
     model) for every step, the exit policy re-calibrated with the source run's settings when it has one, and
     every step's firmware built for the board (flash, RAM). The output run is the QAT step unless
     post-training int8 of the pruned step has the better final-exit accuracy on the validation split
     (report["selected"]); the other steps are kept under OUT/stages/.
Steps 2-3 need legacy Keras: they run in a child process (tinyexit.legacy_keras), the caller's Keras 3 is
untouched. The output is a normal run directory (docs/CONTRACTS.md) plus RUN/compress.json and
RUN/compress.png; `quantize`, `generate`, `build` and `bench` work on it as on any run.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_dir, write_json

MAX_SPARSITY = 0.97


@dataclass(frozen=True)
class CompressConfig:
    target_kb: float | None = None      # weight budget (generated library constants), KiB
    board: str | None = None            # or: the board's flash minus `code_kb`
    code_kb: float = 96.0               # flash kept for code, runtime, app and baked test inputs (--board)
    sparsity: float | None = None       # explicit sparsity instead of a budget
    prune_epochs: int = 10             # the README's KWS figures were measured with 10 + 3
    qat_epochs: int = 3
    batch_size: int = 100
    prune_learning_rate: float = 1e-3
    qat_learning_rate: float = 2e-4
    ramp_fraction: float = 0.6          # the schedule reaches its final sparsity after this part of pruning
    max_train: int | None = None        # cap the training examples (tests, quick looks)
    num_calibration: int = 500
    num_eval: int | None = None
    measure_board: str | None = "nrf52840"   # build every step's firmware for it (flash, RAM); None: skip
    min_prune_elements: int = 1024     # smaller kernels (depthwise) stay dense when the budget allows
    seed: int = 0


# ------------------------------------------------------------------------------------------ the budget

def prunable_layers(model) -> list[dict]:
    """Conv2D / DepthwiseConv2D / Dense layers of a Keras 3 model: kernel elements, output channels and
    per-channel volume (what sparse storage lists per channel)."""
    import keras
    out = []
    for lay in model.layers:
        if isinstance(lay, keras.layers.DepthwiseConv2D):
            k = lay.get_weights()[0]                  # [kh, kw, c, mult]
            ch, vol = k.shape[2] * k.shape[3], k.shape[0] * k.shape[1]
        elif isinstance(lay, keras.layers.Conv2D):
            k = lay.get_weights()[0]                  # [kh, kw, ic, oc]
            ch, vol = k.shape[3], k.shape[0] * k.shape[1] * k.shape[2]
        elif isinstance(lay, keras.layers.Dense):
            k = lay.get_weights()[0]                  # [in, out]
            ch, vol = k.shape[1], k.shape[0]
        else:
            continue
        out.append({"name": lay.name, "class": type(lay).__name__, "elements": int(k.size), "channels": int(ch),
                    "volume": int(vol)})
    return out


def stored_bytes_estimate(layers: list[dict], sparsity: dict[str, float] | float,
                          overhead: int | None = None) -> int:
    """Weight bytes of the generated library with the given sparsity per layer (or one for all): per layer
    the smaller of dense int8 and the sparse lists (value + step byte per kept weight, one count per
    channel), plus `overhead`: the library's other constants (biases, requantization tables), measured on
    the source run's int8 library when it has one, else 20 B per output channel."""
    from tinyexit.codegen.sparse import sparse_bytes_for
    total = overhead if overhead is not None else sum(20 * lay["channels"] for lay in layers)
    for lay in layers:
        s = sparsity if isinstance(sparsity, (int, float)) else sparsity.get(lay["name"], 0.0)
        kept = int(math.ceil((1.0 - s) * lay["elements"]))
        total += min(lay["elements"], sparse_bytes_for(kept, lay["channels"], lay["volume"]))
    return total


def allocate_sparsity(layers: list[dict], budget_bytes: int, overhead: int | None = None,
                      min_elements: int = 1024) -> dict[str, float]:
    """Sparsity per layer for the budget: layers with fewer than `min_elements` weights (depthwise kernels:
    a few taps per channel, little to gain, much to lose) stay dense, the others share the least uniform
    sparsity that fits; when that cannot fit, every layer shares it. Raises when nothing fits."""
    def plan(s: float, big_only: bool) -> dict[str, float]:
        return {lay["name"]: (s if (lay["elements"] >= min_elements or not big_only) else 0.0) for lay in layers}

    est = lambda s, big: stored_bytes_estimate(layers, plan(s, big), overhead)  # noqa: E731
    if est(0.0, True) <= budget_bytes:
        return plan(0.0, True)
    for big_only in (True, False):
        if est(MAX_SPARSITY, big_only) > budget_bytes:
            continue
        lo, hi = 0.0, MAX_SPARSITY
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if est(mid, big_only) <= budget_bytes else (mid, hi)
        return plan(min(MAX_SPARSITY, round(hi + 5e-4, 3)), big_only)
    raise TinyexitError(
        f"a weight budget of {budget_bytes:,} B cannot be met by pruning this model: even at "
        f"{100 * MAX_SPARSITY:.0f} % sparsity it needs {est(MAX_SPARSITY, False):,} B (biases and requantization "
        f"constants included). Choose a larger --target-kb or a smaller model (`tinyexit distill`).")


def library_overhead(run_dir: Path) -> int | None:
    """Constant bytes of the run's int8 library besides the prunable kernels (None without RUN/quant)."""
    from tinyexit.run import Run
    if not Run(run_dir).is_quantized():
        return None
    from tinyexit.codegen.sparse import weight_table
    t = weight_table(Run(run_dir).quant_models())
    return t["dense_bytes"] - sum(la["weight_elements"] for la in t["layers"])


def weight_budget(config: CompressConfig) -> tuple[int | None, str]:
    if config.target_kb is not None and config.board is not None:
        raise TinyexitError("give --target-kb or --board, not both")
    if config.target_kb is not None:
        if config.target_kb <= 0:
            raise TinyexitError("--target-kb must be positive")
        return int(config.target_kb * 1024), f"--target-kb {config.target_kb:g}"
    if config.board is not None:
        from tinyexit.boards import load_board
        b = load_board(config.board)
        flash = b.code_flash.size                    # the image's flash (an NVM area at its end excluded)
        budget = flash - int(config.code_kb * 1024)
        if budget <= 0:
            raise TinyexitError(f"board {b.name} has {flash:,} B of flash for the image, less than the "
                                f"{config.code_kb:g} KiB kept for code (--code-kb)")
        return budget, f"board {b.name}: {flash:,} B image flash - {config.code_kb:g} KiB for code"
    return None, "no budget"


# ------------------------------------------------------------------------------------------ the stage

def _evaluate(model, x, y) -> list[float]:
    p = model.predict(x, batch_size=256, verbose=0)
    p = p if isinstance(p, (list, tuple)) else [p]
    return [float(np.mean(np.argmax(o, -1) == y)) for o in p]


def _write_stage_run(src_meta: dict, model, out: Path, report: dict) -> None:
    from tinyexit.models import exits_with_macs
    meta = {**src_meta, "exits": exits_with_macs(model)}
    from tinyexit.run import Run
    with Run.create(out) as tmp:
        model.save(tmp.model_keras)
        write_json(tmp.model_json_path, meta)
        write_json(tmp.report_path, report)


def library_weights(run_dir: Path) -> dict:
    """Constant bytes of a quantized run's generated C library: stored (sparse where smaller) vs dense."""
    from tinyexit.codegen.sparse import weight_table
    from tinyexit.run import Run
    t = weight_table(Run(run_dir).quant_models())
    return {"stored_bytes": t["stored_bytes"], "dense_bytes": t["dense_bytes"],
            "sparse_layers": t["sparse_layers"], "layers": t["layers"]}


def compress_run(run_dir: str | Path, out: str | Path, config: CompressConfig = CompressConfig(), *,
                 log: Callable[[str], None] | None = print) -> dict:
    """Prune + quantization-aware training of RUN's model to a weight budget; writes the run directory
    `out` (model.keras, model.json, report.json, quant/, policy.json when RUN has one, compress.json,
    compress.png) and returns the compress report."""
    from tinyexit.research.compress.spec import export_spec, export_weights, load_weights_into
    from tinyexit.legacy_keras import run_legacy
    from tinyexit.quantize import quantize_run
    from tinyexit.run import Run
    from tinyexit.train import cap_examples

    log = log or (lambda _s: None)
    t0 = time.time()
    src, out = Run(run_dir), Path(out)
    run = src.path
    if run.resolve() == out.resolve():
        raise TinyexitError("the compressed run must go to another directory than its source (--out)")
    meta = src.model_json()
    policy_src = src.policy() if src.has_policy() else None   # checked before training
    model = src.load_model()
    layers = prunable_layers(model)
    overhead = library_overhead(run)
    budget, why = weight_budget(config)
    if config.sparsity is not None:
        if not 0 <= config.sparsity <= MAX_SPARSITY:
            raise TinyexitError(f"--sparsity must be within 0..{MAX_SPARSITY}")
        sparsity = {lay["name"]: float(config.sparsity) for lay in layers}
    elif budget is not None:
        sparsity = allocate_sparsity(layers, budget, overhead, config.min_prune_elements)
    else:
        raise TinyexitError("give a weight budget: --target-kb N or --board B (or --sparsity S)")
    est0, est = stored_bytes_estimate(layers, 0.0, overhead), stored_bytes_estimate(layers, sparsity, overhead)
    overall = sum(sparsity[la["name"]] * la["elements"] for la in layers) / sum(la["elements"] for la in layers)
    log(f"compress {run} -> {out}: {why}; weights {est0:,} B dense -> {100 * overall:.1f} % of the kernel "
        f"weights pruned (estimated {est:,} B stored; per layer: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sparsity.items()) + ")")

    x, y = src.split("train")
    xv, yv = src.split("validation")
    xt, yt = src.split("test")
    x, y = cap_examples(x, y, config.max_train, config.seed)
    src_report = src.report() if src.report_path.is_file() else {}
    n_out = len(model.outputs)
    loss_weights = (src_report.get("training", {}).get("loss_weights")
                    or [0.3] * (n_out - 1) + [1.0])
    with tempfile.TemporaryDirectory(prefix="tinyexit-compress-") as tmp:
        job = Path(tmp)
        (job / "spec.json").write_text(json.dumps(export_spec(model)))
        np.savez(job / "weights.npz", **export_weights(model))
        np.savez(job / "data.npz", x=x, y=y, xv=xv, yv=yv, xt=xt, yt=yt)
        (job / "job.json").write_text(json.dumps({
            "sparsity": sparsity, "freeze_bn": True, "prune_epochs": config.prune_epochs, "qat_epochs": config.qat_epochs,
            "batch_size": config.batch_size, "prune_learning_rate": config.prune_learning_rate,
            "qat_learning_rate": config.qat_learning_rate, "ramp_fraction": config.ramp_fraction,
            "loss_weights": loss_weights, "seed": config.seed}))
        log(f"tfmot in a legacy-Keras child process ({len(x)} training / {len(xv)} validation examples)")
        run_legacy("tinyexit.research.compress.worker", [job], log=log, what="pruning / QAT worker")
        worker = json.loads((job / "result.json").read_text())
        pruned_w = dict(np.load(job / "pruned.npz"))
        qat_w = dict(np.load(job / "qat.npz")) if (job / "qat.npz").is_file() else None
        qat_tfl = (job / "qat_int8.tflite").read_bytes() if (job / "qat_int8.tflite").is_file() else None

    import keras
    from tinyexit.models import output_names
    names = output_names(model)
    stages = {"original": model}
    pruned = keras.models.clone_model(model)
    load_weights_into(pruned, pruned_w)
    stages["pruned"] = pruned
    if qat_w is not None:
        final = keras.models.clone_model(model)
        load_weights_into(final, qat_w)
        stages["pruned+qat"] = final
    last = list(stages)[-1]

    # Stage run directories: the final one is `out` itself, the others live under out/stages/.
    report = {"source": str(run), "budget_bytes": budget, "budget": why, "sparsity_target": sparsity,
              "estimated_stored_bytes": est,
              "config": asdict(config), "worker": worker, "exits": names, "stages": {}}
    with tempfile.TemporaryDirectory(prefix="tinyexit-compress-stages-", dir=out.parent if out.parent.exists() else None) as stage_tmp:
        stage_dirs = {}
        for name, m in stages.items():
            d = Path(stage_tmp) / name.replace("+", "_")
            acc = _evaluate(m, xt, yt)
            tr = {"task": meta.get("task"), "classes": meta.get("classes"),
                  "exits": [{"name": n, "accuracy": a} for n, a in zip(names, acc)],
                  "compress": {"stage": name, "source": str(run)}}
            _write_stage_run(meta, m, d, tr)
            log(f"[{name}] int8 segments")
            # QAT's int8 model keeps the activation ranges it learned; the other steps are calibrated.
            q = quantize_run(d, num_calibration=config.num_calibration, num_eval=config.num_eval, seed=config.seed,
                             whole=qat_tfl if name == "pruned+qat" else None)
            lib = library_weights(d)
            sp = {lay["name"]: float(np.mean(m.get_layer(lay["name"]).get_weights()[0] == 0)) for lay in layers}
            report["stages"][name] = {
                "float_accuracy": {e["name"]: e["float_accuracy"] for e in q["exits"]},
                "int8_accuracy": {e["name"]: e["int8_accuracy"] for e in q["exits"]},
                "whole_model_check": q.get("whole_model_check"),
                "weights": lib, "kernel_sparsity": sp,
                "overall_sparsity": float(sum(sp[la["name"]] * la["elements"] for la in layers)
                                          / sum(la["elements"] for la in layers)),
            }
            stage_dirs[name] = d
            f, i = report["stages"][name]["float_accuracy"], report["stages"][name]["int8_accuracy"]
            log(f"[{name}] " + ", ".join(f"{n} float {100 * f[n]:.1f}% int8 {100 * i[n]:.1f}%" for n in names)
                + f"; weights {lib['stored_bytes']:,} B stored ({lib['dense_bytes']:,} B dense)")
        # The output run is the QAT step, unless post-training int8 of the pruned step does better on the
        # validation split (model selection on validation, never on test): both are reported.
        for name, d in stage_dirs.items():
            outs = Run(d).oracle().run(xv)
            report["stages"][name]["validation_int8_accuracy"] = {
                n: float(np.mean(np.argmax(o, -1) == yv)) for n, o in zip(names, outs)}
        cands = [s for s in ("pruned+qat", "pruned") if s in stage_dirs]
        last = max(cands, key=lambda s: (report["stages"][s]["validation_int8_accuracy"][names[-1]], s == "pruned+qat"))
        report["selected"] = last
        if last != cands[0]:
            log(f"post-training int8 of the pruned model beats QAT on the validation split "
                f"({100 * report['stages'][last]['validation_int8_accuracy'][names[-1]]:.2f}% vs "
                f"{100 * report['stages'][cands[0]]['validation_int8_accuracy'][names[-1]]:.2f}%): the output run "
                f"is the '{last}' step, QAT's is kept under stages/")
        for name, d in stage_dirs.items():
            report["stages"][name]["run"] = str(out if name == last else out / "stages" / d.name)
        final_dir = stage_dirs[last]
        board_note = measure_boards(report, stage_dirs, policy_src, config.measure_board, log)
        if board_note:
            report["board_note"] = board_note
        report["wall_time_s"] = round(time.time() - t0, 1)
        report["met_budget"] = (budget is None or report["stages"][last]["weights"]["stored_bytes"] <= budget)
        with atomic_dir(out) as tmp:
            for p in final_dir.iterdir():
                shutil.move(str(p), str(tmp / p.name))
            for name, d in stage_dirs.items():
                if name != last:
                    (tmp / "stages").mkdir(exist_ok=True)
                    shutil.move(str(d), str(tmp / "stages" / d.name))
            write_json(tmp / "compress.json", report)
            plot_compress(report, tmp / "compress.png",
                          flash={k: st["board"]["flash"] for k, st in report["stages"].items() if "board" in st} or None)
    return report


def measure_boards(report: dict, stage_dirs: dict, policy_src: dict | None, board: str | None, log) -> str | None:
    """Calibrate every step with the source run's policy settings and build its firmware for `board`
    (serial-input variant: no test inputs baked into flash): flash and RAM per step in report["stages"]."""
    import shutil as _sh

    from tinyexit.policy.calibrate import calibrate_run
    if policy_src is None:
        return "the source run has no policy.json: steps not calibrated, firmware not built"
    for name, d in stage_dirs.items():
        log(f"[{name}] calibrating the exit policy with the source run's settings")
        calibrate_run(d, epsilon=policy_src.get("epsilon", 0.02), delta=policy_src.get("delta", 0.1),
                      risk=policy_src.get("risk", "gap"), method=policy_src.get("method", "ltt"),
                      policy=policy_src.get("policy", "max_softmax"))
    if board is None:
        return None
    if _sh.which("arm-none-eabi-gcc") is None:
        return f"arm-none-eabi-gcc is not installed: firmware for {board} not built (scripts/setup.sh installs it)"
    from tinyexit.build import build_run
    for name, d in stage_dirs.items():
        fw = build_run(d, board, serial_inputs=True)
        s = fw.sizes
        report["stages"][name]["board"] = {"board": board, "flash": s.flash, "flash_code": s.flash_code,
                                           "flash_weights": s.flash_weights, "ram": s.ram, "arena": s.arena,
                                           "flash_budget": s.flash_budget, "ram_budget": s.ram_budget}
        log(f"[{name}] {board} firmware: flash {s.flash:,} B, RAM {s.ram:,} B")
    return None


def plot_compress(report: dict, path: Path, flash: dict | None = None) -> None:
    """Accuracy per exit (int8) against stored weight bytes (or flash, when measured) for each step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyexit.io import save_figure
    fig, ax = plt.subplots(figsize=(7, 4.2))
    stages = report["stages"]
    key = "flash" if flash else "stored_bytes"
    for n in report["exits"]:
        xs = [(flash or {}).get(s, st["weights"]["stored_bytes"]) / 1024 for s, st in stages.items()]
        ys = [100 * st["int8_accuracy"][n] for st in stages.values()]
        ax.plot(xs, ys, "o-", label=f"{n} (int8)")
        for s, xx, yy in zip(stages, xs, ys):
            ax.annotate(s, (xx, yy), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(xlabel=("flash on the board" if key == "flash" else "stored weight bytes") + " (KiB)",
           ylabel="test accuracy (%)", title="compress: accuracy vs size per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
