"""Compression of the default KWS run (issue 9): pruning + QAT to several weight budgets, and an ERDE-distilled
student (with a plain cross-entropy student of the same size for contrast). For every model: accuracy per exit
(float and int8 on tflite_micro, the test split), weight bytes of the generated C library (dense vs stored),
flash and RAM of the nRF52840 firmware (`tinyexit.build.build_run`, serial-input variant: no baked test
inputs), and one PNG of final-exit int8 accuracy against flash.

    .venv/bin/python benchmarks/compress_kws.py [--run runs/kws] [--work runs/compress-kws]
        [--targets 32,28,24,20] [--prune-epochs 10] [--qat-epochs 3] [--student filters=32,blocks=3,exits=2]
        [--student-epochs 20] [--skip-distill]

The source run is not modified (it is copied to WORK/source). Writes WORK/compress_kws.json and .png.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyexit.io import write_json  # noqa: E402


def board_sizes(run: Path, board: str = "nrf52840") -> dict:
    from tinyexit.build import build_run
    fw = build_run(run, board, serial_inputs=True, out=run / "firmware" / "build" / f"{board}-sizes")
    s = fw.sizes
    return {"flash": s.flash, "flash_code": s.flash_code, "flash_weights": s.flash_weights, "ram": s.ram,
            "arena": s.arena, "flash_budget": s.flash_budget, "ram_budget": s.ram_budget}


MATCHED_RATES = (0.5, 0.7, 0.8, 0.9)


def matched_exit_rates(run: Path) -> dict:
    """Accuracy of the early-exit system (first exit when its int8 max-softmax is among the top `rate` of the
    test inputs, else the final exit) and its gap risk (exit wrong where the final exit is right), at the same
    exit rates for every model: compares exit decisions independently of each model's calibrated threshold."""
    import numpy as np

    from tinyexit.run import Run
    x, y = Run(run).split("test")
    outs = Run(run).oracle().run(x)
    conf = outs[0].astype(np.int32).max(axis=1)
    pe, pf = outs[0].argmax(axis=1), outs[-1].argmax(axis=1)
    order = np.argsort(-conf, kind="stable")
    res = {}
    for rate in MATCHED_RATES:
        ex = np.zeros(len(y), bool)
        ex[order[:int(round(rate * len(y)))]] = True
        pred = np.where(ex, pe, pf)
        res[f"{rate:g}"] = {"accuracy": float(np.mean(pred == y)),
                            "gap_risk": float(np.mean(ex & (pe != y) & (pf == y)))}
    return res


def quant_figures(run: Path) -> dict:
    from tinyexit.research.compress import library_weights
    q = json.loads((run / "quant" / "report.json").read_text())
    return {"float_accuracy": {e["name"]: e["float_accuracy"] for e in q["exits"]},
            "int8_accuracy": {e["name"]: e["int8_accuracy"] for e in q["exits"]},
            "macs_to_exit": {e["name"]: e["macs_to_exit"] for e in q["exits"]},
            "matched_exit_rates": matched_exit_rates(run),
            "weights": {k: v for k, v in library_weights(run).items() if k != "layers"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(REPO / "runs" / "kws"))
    ap.add_argument("--work", default=str(REPO / "runs" / "compress-kws"))
    ap.add_argument("--targets", default="32,28,24,20")
    ap.add_argument("--prune-epochs", type=int, default=10)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--student", default="filters=32,blocks=3,exits=2")
    ap.add_argument("--student-epochs", type=int, default=20)
    ap.add_argument("--skip-distill", action="store_true")
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the cross-entropy student")
    ap.add_argument("--seed", type=int, default=0, help="student initialisation / shuffling seed")
    ap.add_argument("--resummarize", action="store_true",
                    help="recompute the weight figures of the runs already in WORK and rewrite the JSON and PNG")
    args = ap.parse_args()
    if args.resummarize:
        return resummarize(Path(args.work))

    from tinyexit.research.compress import CompressConfig, compress_run
    from tinyexit.policy.calibrate import calibrate_run
    from tinyexit.quantize import quantize_run

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "source"
    if not src.exists():
        shutil.copytree(args.run, src, ignore=shutil.ignore_patterns("firmware", "bench"))
    policy = json.loads((src / "policy.json").read_text())
    results: dict = {"source": str(Path(args.run).resolve()), "board": "nrf52840", "models": {}}
    if (work / "compress_kws.json").is_file():    # a later invocation adds its models to the earlier ones
        results["models"] = json.loads((work / "compress_kws.json").read_text())["models"]
    t0 = time.time()
    if not (src / "quant" / "report.json").is_file():
        quantize_run(src)
    if "original" not in results["models"]:
        results["models"]["original"] = {"kind": "original", "run": str(src), **quant_figures(src), **board_sizes(src)}
        print(f"original: {json.dumps(results['models']['original'])}", flush=True)

    epochs_tag = "" if (args.prune_epochs, args.qat_epochs) == (10, 3) else f" p{args.prune_epochs} q{args.qat_epochs}"
    for kb in [float(t) for t in args.targets.split(",") if t]:
        out = work / (f"c{kb:g}kb" + epochs_tag.replace(" ", "-"))
        rep = compress_run(src, out, CompressConfig(target_kb=kb, prune_epochs=args.prune_epochs,
                                                    qat_epochs=args.qat_epochs), log=print)
        stages = rep["stages"]
        label = f"compress {kb:g} KiB{epochs_tag}"
        results["models"][label] = {
            "kind": "compress", "run": str(out), "target_kb": kb, "met_budget": rep["met_budget"],
            "sparsity": stages["pruned+qat"]["overall_sparsity"], **quant_figures(out), **board_sizes(out),
            "ptq_int8_accuracy": stages["pruned"]["int8_accuracy"],
            "qat_int8_accuracy": stages["pruned+qat"]["int8_accuracy"], "selected": rep["selected"],
            "ptq_weights": {k: v for k, v in stages["pruned"]["weights"].items() if k != "layers"},
            "wall_time_s": rep["wall_time_s"]}
        print(f"{label}: {json.dumps(results['models'][label])}", flush=True)
        write_json(work / "compress_kws.json", results)

    if not args.skip_distill:
        from tinyexit.research.distill import DistillConfig, distill_run
        tag = ("" if (args.alpha, args.beta, args.temperature) == (0.7, 0.5, 4.0)
               else f" a{args.alpha:g} b{args.beta:g} T{args.temperature:g}")
        seed = "" if args.seed == 0 else f" seed{args.seed}"
        if args.student != "filters=32,blocks=3,exits=2":
            seed += " " + args.student.replace("=", "").replace(",", "-")
        todo = [(f"distill (ERDE){tag}{seed}", False)] + ([] if args.no_baseline
                                                          else [(f"student, cross entropy only{seed}", True)])
        for label, plain in todo:
            out = work / (("student-erde" + (tag + seed).replace(" ", "-")) if not plain
                          else "student-ce" + seed.replace(" ", "-"))
            rep = distill_run(src, out, args.student,
                              DistillConfig(epochs=args.student_epochs, plain=plain, alpha=args.alpha, beta=args.beta,
                                            temperature=args.temperature, seed=args.seed), log=print)
            quantize_run(out)
            calibrate_run(out, epsilon=policy.get("epsilon", 0.02), delta=policy.get("delta", 0.1),
                          risk=policy.get("risk", "gap"), method=policy.get("method", "ltt"),
                          policy=policy.get("policy", "max_softmax"))
            results["models"][label] = {"kind": "distill", "run": str(out), "student": args.student, "plain": plain,
                                        "params": rep["model"]["params"], **quant_figures(out), **board_sizes(out),
                                        "wall_time_s": rep["training"]["wall_time_s"]}
            print(f"{label}: {json.dumps(results['models'][label])}", flush=True)
            write_json(work / "compress_kws.json", results)

    return summarize(results, work, t0)


def run_dir_of(work: Path, name: str, m: dict) -> Path:
    if m.get("run"):
        return Path(m["run"])
    if m["kind"] == "original":
        return work / "source"
    if m["kind"] == "compress":
        return work / f"c{m['target_kb']:g}kb"
    if m["plain"]:
        return work / ("student-ce" + name[len("student, cross entropy only"):].replace(" ", "-"))
    return work / ("student-erde" + name[len("distill (ERDE)"):].replace(" ", "-"))


def resummarize(work: Path) -> int:
    from tinyexit.research.compress import library_weights
    results = json.loads((work / "compress_kws.json").read_text())
    for name, m in results["models"].items():
        run = run_dir_of(work, name, m)
        m["run"] = str(run)
        m["weights"] = {k: v for k, v in library_weights(run).items() if k != "layers"}
        m["matched_exit_rates"] = matched_exit_rates(run)
        if m["kind"] == "compress":
            c = json.loads((run / "compress.json").read_text())
            m["ptq_weights"] = {k: v for k, v in library_weights(Path(c["stages"]["pruned"]["run"])
                                                                 if Path(c["stages"]["pruned"]["run"]).is_dir()
                                                                 else run / "stages" / "pruned").items()
                                if k != "layers"}
    return summarize(results, work, None)


def summarize(results: dict, work: Path, t0: float | None) -> int:
    base = results["models"]["original"]
    ok = [(n, m) for n, m in results["models"].items()
          if m["int8_accuracy"]["final"] >= base["int8_accuracy"]["final"] - 0.02]
    smallest = min(ok, key=lambda nm: (nm[1]["flash"], -nm[1]["int8_accuracy"]["final"]))   # ties: the more accurate
    results["smallest_within_2_points"] = {
        "model": smallest[0], "flash": smallest[1]["flash"], "flash_ratio": smallest[1]["flash"] / base["flash"],
        "weights_stored": smallest[1]["weights"]["stored_bytes"],
        "weights_ratio": smallest[1]["weights"]["stored_bytes"] / base["weights"]["stored_bytes"],
        "final_int8_accuracy": smallest[1]["int8_accuracy"]["final"],
        "original_final_int8_accuracy": base["int8_accuracy"]["final"]}
    if t0 is not None:
        results["wall_time_s"] = round(time.time() - t0, 1)
    write_json(work / "compress_kws.json", results)
    plot(results, work / "compress_kws.png")
    print(table(results))
    print(f"wrote {work / 'compress_kws.json'} and {work / 'compress_kws.png'}")
    return 0


def table(r: dict) -> str:
    rows = [f"{'model':<44} {'exit int8':>9} {'final int8':>10} {'final float':>11} {'weights st/dense B':>19} "
            f"{'flash B':>9} {'RAM B':>8}"]
    for n, m in r["models"].items():
        ex = [k for k in m["int8_accuracy"] if k != "final"]
        rows.append(f"{n:<44} {100 * m['int8_accuracy'][ex[0]] if ex else float('nan'):8.2f}% "
                    f"{100 * m['int8_accuracy']['final']:9.2f}% {100 * m['float_accuracy']['final']:10.2f}% "
                    f"{m['weights']['stored_bytes']:>9,}/{m['weights']['dense_bytes']:<9,} {m['flash']:>9,} {m['ram']:>8,}")
    rates = [f"{v:g}" for v in MATCHED_RATES]
    rows.append("\nearly-exit system at matched exit rates (int8, test): accuracy / gap risk")
    rows.append(f"{'model':<44} " + " ".join(f"{'exit ' + str(round(100 * float(k))) + ' %':>15}" for k in rates))
    for n, m in r["models"].items():
        mr = m.get("matched_exit_rates")
        if mr:
            rows.append(f"{n:<44} " + " ".join(f"{100 * mr[k]['accuracy']:7.2f}/{100 * mr[k]['gap_risk']:5.2f}%"
                                               for k in rates))
    s = r.get("smallest_within_2_points")
    if s:
        rows.append(f"smallest within 2 points of the original final-exit int8 accuracy: {s['model']} "
                    f"({100 * s['final_int8_accuracy']:.2f}% vs {100 * s['original_final_int8_accuracy']:.2f}%), "
                    f"flash {s['flash']:,} B = {s['flash_ratio']:.3f} x the original, weights {s['weights_ratio']:.3f} x")
    return "\n".join(rows)


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    marks = {"original": "*", "compress": "o", "distill": "s"}
    for n, m in r["models"].items():
        for ex, style in (("final", ""), ("exit", "x")):
            keys = [k for k in m["int8_accuracy"] if (k == "final") == (ex == "final")]
            if not keys:
                continue
            y = 100 * m["int8_accuracy"][keys[0]]
            ax.plot(m["flash"] / 1024, y, marks[m["kind"]] if ex == "final" else "x", color=None if ex == "final" else "gray")
            if ex == "final":
                ax.annotate(n, (m["flash"] / 1024, y), fontsize=7, textcoords="offset points", xytext=(4, 2))
    base = r["models"]["original"]["int8_accuracy"]["final"]
    ax.axhline(100 * (base - 0.02), ls="--", lw=0.8, color="gray", label="original final - 2 points")
    ax.set(xlabel="nRF52840 firmware flash, serial-input build (KiB)", ylabel="test accuracy, int8 (%)",
           title="KWS: accuracy vs flash (final exit: markers, early exit: x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
