"""The shared exit branch's report for people: the plot (RUN/branch/branch.png) and the table."""
from __future__ import annotations

from pathlib import Path

from tinyexit.io import save_figure


def plot_branch(rep: dict, path: Path) -> None:
    """Accuracy per exit point against MACs (shared branch vs separate heads, int8) and the memory of each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ex = rep["exits"]
    a.plot([e["shared"]["macs_to_exit"] / 1e6 for e in ex], [e["shared"]["int8_accuracy"] for e in ex], "o-",
           label="shared branch (int8)")
    if ex and ex[0]["head"]["int8_accuracy"] is not None:
        a.plot([e["head"]["macs_to_exit"] / 1e6 for e in ex], [e["head"]["int8_accuracy"] for e in ex], "s--",
               label="separate heads (int8)")
    a.plot([rep["final"]["macs"] / 1e6], [rep["final"]["int8_accuracy"]], "k*", ms=10, label="final classifier")
    for e in ex:
        a.annotate(e["point"], (e["shared"]["macs_to_exit"] / 1e6, e["shared"]["int8_accuracy"]), fontsize=7,
                   textcoords="offset points", xytext=(4, -10))
    a.set(title=f"accuracy per exit point ({rep['num_test']} test inputs)", xlabel="MACs to exit (M)",
          ylabel="accuracy")
    a.legend(fontsize=8)
    m = rep["memory"]
    b.bar(["shared branch", f"{len(ex)} heads"], [m["shared_param_bytes"], m["heads_param_bytes"]],
          color=["tab:blue", "tab:orange"])
    b.set(title="exit weights + biases (int8, bytes)")
    save_figure(fig, path, dpi=110)


def format_report(rep: dict) -> str:
    """The figures as a table for people."""
    pct = lambda v: "     -" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    rows = [f"shared exit branch: vector of {rep['vector']['size']} int8 values, {len(rep['points'])} exit points, "
            f"{rep['num_test']} test inputs (int8 on {rep['evaluator']})",
            f"  {'exit point':<14} {'shared float':>12} {'shared int8':>11} {'MACs':>10}  {'head float':>10} "
            f"{'head int8':>9} {'MACs':>10}"]
    for e in rep["exits"]:
        s, h = e["shared"], e["head"]
        rows.append(f"  {e['point']:<14} {pct(s['float_accuracy']):>12} {pct(s['int8_accuracy']):>11} "
                    f"{s['macs_to_exit']:>10,}  {pct(h['float_accuracy']):>10} {pct(h['int8_accuracy']):>9} "
                    f"{h['macs_to_exit']:>10,}")
    f = rep["final"]
    rows.append(f"  {'final (model)':<14} {pct(f['float_accuracy']):>12} {pct(f['int8_accuracy']):>11} "
                f"{f['macs']:>10,}")
    m = rep["memory"]
    n = len(rep["points"])
    rows.append(f"  memory, weights+biases: one shared branch {m['shared_param_bytes']:,} B vs {n} separate heads "
                f"{m['heads_param_bytes']:,} B (saves {m['saving_param_bytes']:,} B, "
                f"{100 * (m['saving_fraction'] or 0):.0f}%)")
    if "shared_flash_bytes" in m:
        rows.append(f"  memory, generated C constants: shared {m['shared_flash_bytes']:,} B vs heads "
                    f"{m['heads_flash_bytes']:,} B (saves {m['heads_flash_bytes'] - m['shared_flash_bytes']:,} B)")
    if rep.get("data_note"):
        rows.append(f"  note: {rep['data_note']}")
    return "\n".join(rows)
