"""``ncspec figure NAME --out DIR``: a paper figure, the theory drawn over the simulation."""
from __future__ import annotations

FIGURES = ("eigenspace", "directpred", "centervector", "dual", "stepwise", "jepa")


def _cmd_figure(args) -> int:
    import importlib
    module = importlib.import_module(f"ncspec.reference.figures.{args.name}")
    for p in getattr(module, f"{args.name}_figure")(args.out, seed=args.seed):
        print(p)
    return 0


def add_figure_commands(sub) -> None:
    f = sub.add_parser("figure", help="reproduce a paper figure")
    f.add_argument("name", choices=FIGURES)
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_cmd_figure)
