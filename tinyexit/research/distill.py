"""`tinyexit distill TEACHER_RUN --student SPEC`: early-exit distillation (ERDE-style).

A smaller early-exit student (DS-CNN with fewer filters / blocks, SPEC like `filters=32,blocks=3,exits=2`)
learns from a larger early-exit teacher. Each student exit is paired with the teacher exit at the nearest
relative depth (fraction of the teacher's / student's full MACs), the final exit with the final exit. Per
student exit, on every training input:
  - cross entropy with the label, weight (1 - alpha);
  - where the paired teacher exit is right: knowledge distillation, alpha x T^2 x KL(teacher_T || student_T)
    on temperature-softened outputs (softmax(log p / T): the models output softmax, log p = logits + const);
  - where the paired teacher exit is wrong (early exits only): beta x (log C - H(student)), the entropy
    loss that pushes the student's early exit toward high entropy there, so it does not exit confidently on
    inputs even the teacher gets wrong.
The exit losses are weighted as the student's builder weights them (DS-CNN: exits 0.3, final 1.0), the
best validation epoch (final exit) is kept, and a normal run directory is written (docs/CONTRACTS.md), with
the distillation settings and the teacher's figures in report.json["distill"].

    parse_student(spec, teacher_meta) -> DSCNNConfig
    distill_run(teacher_run, out, spec, DistillConfig()) -> report dict
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.io import write_json

SPEC_KEYS = {"filters", "blocks", "exits", "head_channels", "early_view"}


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7          # share of the distillation term (1 - alpha: cross entropy with the label)
    beta: float = 0.5           # weight of the entropy term on inputs the paired teacher exit gets wrong
    epochs: int = 20
    batch_size: int = 100
    learning_rate: float = 3e-3
    final_learning_rate: float = 1e-4
    max_train: int | None = None
    seed: int = 0
    plain: bool = False         # True: the same student and schedule with cross entropy only (a baseline)


def parse_student(spec: str, teacher_meta: dict):
    """SPEC: comma-separated key=value among filters, blocks, exits (block indices after which an exit sits,
    joined by '+': `exits=2` or `exits=1+2`), head_channels, early_view (0/1). Input shape and classes come
    from the teacher."""
    from tinyexit.models import DSCNNConfig

    if teacher_meta.get("task") != "kws":
        raise TinyexitError(f"distill builds DS-CNN students for keyword spotting; the teacher's task is "
                            f"{teacher_meta.get('task')!r}")
    vals: dict[str, str] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise TinyexitError(f"student spec item '{part}' is not key=value (e.g. filters=32,blocks=3,exits=2)")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in SPEC_KEYS:
            raise TinyexitError(f"unknown student spec key '{k}'; use {', '.join(sorted(SPEC_KEYS))}")
        vals[k] = v
    try:
        filters = int(vals.get("filters", 32))
        blocks = int(vals.get("blocks", 3))
        exits = tuple(int(e) for e in vals.get("exits", str(max(1, blocks // 2))).split("+") if e)
        head = int(vals.get("head_channels", min(32, filters // 2)))
        early_view = vals.get("early_view", "1") not in ("0", "false", "no")
    except ValueError as e:
        raise TinyexitError(f"student spec '{spec}': {e}") from None
    if filters < 1 or blocks < 2:
        raise TinyexitError("a student needs filters >= 1 and blocks >= 2 (an exit goes after a block before the last)")
    try:
        return DSCNNConfig(input_shape=tuple(teacher_meta["input_shape"]), num_classes=len(teacher_meta["classes"]),
                           filters=filters, blocks=blocks, exits_after=exits, head_channels=head,
                           early_view=early_view)
    except ValueError as e:
        raise TinyexitError(f"student spec '{spec}': {e}") from None


def pair_exits(teacher_exits: list[dict], student_exits: list[dict]) -> list[int]:
    """For each student exit (final last), the index of the teacher exit at the nearest relative depth."""
    tf_, sf_ = teacher_exits[-1]["macs"], student_exits[-1]["macs"]
    pairs = []
    for j, s in enumerate(student_exits):
        if j == len(student_exits) - 1:
            pairs.append(len(teacher_exits) - 1)
            continue
        d = s["macs"] / sf_
        pairs.append(min(range(len(teacher_exits) - 1 or 1), key=lambda k: abs(teacher_exits[k]["macs"] / tf_ - d)))
    return pairs


def soften(p: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(p, 1e-7, 1.0)) / t
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def pack_targets(y: np.ndarray, teacher_probs: np.ndarray, t: float) -> np.ndarray:
    """[label, teacher wrong (0/1), teacher softened probabilities...] per input: what the loss reads."""
    wrong = (np.argmax(teacher_probs, -1) != y).astype(np.float32)
    return np.concatenate([y[:, None].astype(np.float32), wrong[:, None], soften(teacher_probs, t)], axis=1)


def erde_loss(num_classes: int, cfg: DistillConfig, early: bool):
    from keras import ops

    t, a, b = float(cfg.temperature), float(cfg.alpha), float(cfg.beta)
    log_c = float(np.log(num_classes))

    def loss(y_true, y_pred):
        label = ops.cast(y_true[:, 0], "int32")
        wrong = y_true[:, 1]
        tq = y_true[:, 2:]
        p = ops.clip(y_pred, 1e-7, 1.0)
        logp = ops.log(p)
        ce = -ops.sum(ops.one_hot(label, num_classes) * logp, axis=-1)
        if cfg.plain:
            return ce
        log_s_t = ops.log_softmax(logp / t, axis=-1)
        kl = ops.sum(tq * (ops.log(ops.clip(tq, 1e-7, 1.0)) - log_s_t), axis=-1) * (t * t)
        total = (1.0 - a) * ce + a * (1.0 - wrong) * kl
        if early:
            ent = -ops.sum(p * logp, axis=-1)
            total = total + b * wrong * (log_c - ent)
        return total

    loss.__name__ = "erde_exit" if early else "erde_final"
    return loss


def distill_run(teacher_run: str | Path, out: str | Path, spec: str, config: DistillConfig = DistillConfig(), *,
                log: Callable[[str], None] | None = print, verbose: int = 0) -> dict:
    """Train the student described by `spec` from the teacher run; write the run directory `out`."""
    import keras

    from tinyexit.models import build_dscnn, exits_with_macs, output_names
    from tinyexit.run import Run
    from tinyexit.train import _KeepBest, cap_examples, evaluate_exits, plot_history

    log = log or (lambda _s: None)
    t0 = time.time()
    teacher_run, out = Path(teacher_run), Path(out)
    if teacher_run.resolve() == out.resolve():
        raise TinyexitError("the student must go to another run directory than the teacher (--out)")
    if not 0 <= config.alpha <= 1 or config.beta < 0 or config.temperature <= 0:
        raise TinyexitError("distillation needs 0 <= alpha <= 1, beta >= 0 and temperature > 0")
    if config.epochs < 1:
        raise TinyexitError("--epochs must be at least 1")
    src = Run(teacher_run)
    meta = src.model_json()
    mc = parse_student(spec, meta)
    teacher = src.load_model()
    x, y = src.split("train")
    xv, yv = src.split("validation")
    xt, yt = src.split("test")
    x, y = cap_examples(x, y, config.max_train, config.seed)

    keras.utils.set_random_seed(config.seed)
    student = build_dscnn(mc)
    s_specs = exits_with_macs(student)
    t_exits = meta["exits"]
    pairs = pair_exits(t_exits, s_specs)
    log(f"distill {teacher_run} -> {out}: student {spec!r} ({student.count_params():,} parameters vs the "
        f"teacher's {teacher.count_params():,}); exits paired with the teacher's: "
        + ", ".join(f"{s['name']}<-{t_exits[k]['name']}" for s, k in zip(s_specs, pairs))
        + (" (plain cross entropy: baseline)" if config.plain else
           f"; T={config.temperature:g}, alpha={config.alpha:g}, beta={config.beta:g}"))

    tp = teacher.predict(x, batch_size=256, verbose=0)
    tp = tp if isinstance(tp, (list, tuple)) else [tp]
    tpv = teacher.predict(xv, batch_size=256, verbose=0)
    tpv = tpv if isinstance(tpv, (list, tuple)) else [tpv]
    C = len(meta["classes"])
    targets = [pack_targets(y, tp[k], config.temperature) for k in pairs]
    vtargets = [pack_targets(yv, tpv[k], config.temperature) for k in pairs]
    wrong_rate = {s["name"]: float(targets[j][:, 1].mean()) for j, s in enumerate(s_specs)}

    n_out = len(student.outputs)
    losses = [erde_loss(C, config, early=(j < n_out - 1)) for j in range(n_out)]
    weights = [mc.loss_weights["final"] if j == n_out - 1 else mc.loss_weights["exit"] for j in range(n_out)]
    steps = max(1, int(np.ceil(len(x) / config.batch_size))) * config.epochs
    lr = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps,
                                                alpha=config.final_learning_rate / config.learning_rate)
    student.compile(optimizer=keras.optimizers.Adam(lr), loss=losses, loss_weights=weights)

    names = [s["name"] for s in s_specs]

    class _ValAcc(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            acc = evaluate_exits(self.model, xv, yv)
            for n in names:
                logs[f"val_{n}_accuracy"] = acc[n]
            log(f"  epoch {epoch + 1}/{config.epochs}: loss {logs.get('loss', float('nan')):.3f}, validation "
                + " ".join(f"{n} {100 * acc[n]:.1f}%" for n in names))

    best = _KeepBest(f"val_{names[-1]}_accuracy")
    hist = student.fit(x, targets, validation_data=(xv, vtargets), epochs=config.epochs,
                       batch_size=config.batch_size, shuffle=True, verbose=verbose, callbacks=[_ValAcc(), best])
    if best.weights is not None:
        student.set_weights(best.weights)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    acc, val_acc = evaluate_exits(student, xt, yt), evaluate_exits(student, xv, yv)
    t_acc = evaluate_exits(teacher, xt, yt)
    t_names = output_names(teacher)
    report = {
        "task": meta["task"], "classes": meta["classes"],
        "exits": [{"name": s["name"], "accuracy": acc[s["name"]], "validation_accuracy": val_acc[s["name"]],
                   "macs": s["macs"], "point": s["point"]} for s in s_specs],
        "data": {"source": meta.get("data", {}).get("source"), "train_examples": int(len(x)),
                 "validation_examples": int(len(xv)), "test_examples": int(len(xt)),
                 "test_split": "the teacher's test split"},
        "training": {"epochs": config.epochs, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                     "final_learning_rate": config.final_learning_rate, "best_epoch": best.epoch + 1,
                     "loss_weights": weights, "seed": config.seed, "wall_time_s": round(time.time() - t0, 1)},
        "model": {"name": student.name, "params": int(student.count_params()), **asdict(mc)},
        "distill": {"teacher": str(teacher_run), "student_spec": spec, **asdict(config),
                    "loss": "cross entropy" if config.plain else "ERDE: CE + KD (teacher right) + entropy (teacher wrong, early exits)",
                    "pairs": {s["name"]: t_exits[k]["name"] for s, k in zip(s_specs, pairs)},
                    "teacher_wrong_rate_train": wrong_rate,
                    "teacher_params": int(teacher.count_params()),
                    "teacher_accuracy": {n: t_acc[n] for n in t_names},
                    "teacher_macs": {e["name"]: e["macs"] for e in t_exits}},
    }
    model_json = {"task": meta["task"], "input_shape": list(mc.input_shape), "classes": meta["classes"],
                  "exits": s_specs, "data": meta["data"]}
    with Run.create(out) as tmp:
        student.save(tmp.model_keras)
        write_json(tmp.model_json_path, model_json)
        write_json(tmp.report_path, report)
        write_json(tmp.history_path, history)
        plot_history(history, names, tmp.training_plot)
    log("student test accuracy: " + ", ".join(f"{n} {100 * acc[n]:.2f}%" for n in names)
        + " | teacher: " + ", ".join(f"{n} {100 * t_acc[n]:.2f}%" for n in t_names))
    return report
