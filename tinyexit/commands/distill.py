"""`tinyexit distill TEACHER_RUN --student SPEC`: a smaller early-exit student from an early-exit teacher (ERDE)."""
from __future__ import annotations

from pathlib import Path

from tinyexit.errors import TinyexitError

NAME = "distill"
HELP = "train a smaller early-exit student from an early-exit teacher run (KD per exit + entropy loss, ERDE)"


def add_arguments(parser) -> None:
    parser.add_argument("teacher", metavar="TEACHER_RUN", help="trained teacher run directory")
    parser.add_argument("--student", required=True, metavar="SPEC",
                        help="student DS-CNN, e.g. filters=32,blocks=3,exits=2 (exits: block indices joined by '+')")
    parser.add_argument("--out", default=None, help="student run directory (default: TEACHER-student)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7, help="share of the distillation term (default 0.7)")
    parser.add_argument("--beta", type=float, default=0.5,
                        help="weight of the entropy term where the teacher is wrong (default 0.5)")
    parser.add_argument("--plain", action="store_true", help="cross entropy only (a baseline without the teacher)")
    parser.add_argument("--max-train", type=int, default=None)


def run(args) -> int:
    from tinyexit.run import Run

    src = Path(args.teacher)
    if not src.is_dir():
        raise TinyexitError(f"teacher run directory '{src}' does not exist")
    Run(src).check_trained()   # before importing TensorFlow
    from tinyexit.research.distill import DistillConfig, distill_run
    out = Path(args.out) if args.out else src.with_name(f"{src.name}-student")
    cfg = DistillConfig(temperature=args.temperature, alpha=args.alpha, beta=args.beta, epochs=args.epochs,
                        max_train=args.max_train, plain=args.plain)
    rep = distill_run(src, out, args.student, cfg, log=print)
    print(f"student: {rep['model']['params']:,} parameters (teacher {rep['distill']['teacher_params']:,})")
    for e in rep["exits"]:
        print(f"  {e['name']:<8} test {100 * e['accuracy']:6.2f}%  MACs {e['macs']:,}")
    print(f"wrote {out} (quantize / compress / generate / build work on it)")
    return 0
