"""`tinyexit train (kws|ic|vww)` / `tinyexit train --model RECIPE.yaml`: train a model recipe (models/) with its
early exits and write a run directory."""
from pathlib import Path

NAME = "train"
HELP = ("train a model with early exits: a built-in task (kws: DS-CNN, ic: ResNet-8, vww: MobileNetV1-0.25; "
        "the recipes in models/) or your recipe (--model)")


def add_arguments(p):
    p.add_argument("task", nargs="?", choices=["kws", "ic", "vww"],
                   help="a built-in task: its recipe models/kws-dscnn.yaml, models/ic-resnet8.yaml or "
                        "models/vww-mobilenet.yaml")
    p.add_argument("--model", metavar="RECIPE", default=None,
                   help="train this model recipe instead: a .yaml file, or the name of one in models/ "
                        "(fields: docs/MODELS.md)")
    p.add_argument("--data", type=Path, default=None,
                   help="data of the recipe's kind: kws: Speech Commands v2 style folder; ic: CIFAR-10 python "
                        "batches folder; vww: image folder with one sub-folder per class (default: the recipe's "
                        "offline data set, see README)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's; kws 20, ic 8, "
                                                            "vww 30)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default runs/TASK, or runs/RECIPE-NAME with --model)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args) -> int:
    from tinyexit.errors import TinyexitError

    if (args.task is None) == (args.model is None):
        raise TinyexitError("give a built-in task (kws, ic or vww) or --model RECIPE.yaml"
                            + (", not both" if args.task else ""))
    from tinyexit.models.recipe import builtin_recipe, load_recipe
    from tinyexit.train import format_report, train_recipe

    recipe = builtin_recipe(args.task) if args.task else load_recipe(args.model)
    out = args.out or Path("runs") / (args.task or recipe.name)
    report = train_recipe(recipe, data=args.data, out=out, epochs=args.epochs, verbose=0 if args.quiet else 2)
    print(format_report(report))
    print(f"run directory: {out}")
    return 0
