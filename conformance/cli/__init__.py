"""The ``ncspec`` command line.

    ncspec claims [ID ...] [--json]        list every registered claim, or print some whole
    ncspec check [--adapter X] [--json PATH] [--report PATH.md|.html] [--xfail PATH]
                 [--profile ci|thorough] [--seed N] [-k EXPR]
                                           run the spec suite, print the claims table
    ncspec mutants [--all] [--mutant NAME ...] [--claim ID ...] [--json PATH]
                                           kill matrix: which claims catch which deliberate bug
    ncspec figure eigenspace --out DIR     reproduce Halvagal et al. 2022, Fig. 1
    ncspec figure directpred --out DIR     DirectPred phase portrait and the W1 threshold (Tian et al.; Wang et al.)
    ncspec figure centervector --out DIR   ‖s‖ over training per method and ablation (Jha et al., Figs. 3–4)
    ncspec figure dual --out DIR           SG vs gradient descent in the scalar case, equilibrium spheres (Ponce et al.)
    ncspec train --dataset D --method M --out DIR [--resume]   one SSL run on images (CIFAR-10, STL-10, npz)
    ncspec reproduce table1 --data-root DIR                    Halvagal et al. Table 1 grid (N4)
    ncspec bench                                               training throughput
    ncspec diagnose PATH... [--report R.md|.html]              collapse verdict on saved embeddings
"""
from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    from .check import add_check_commands
    from .claims import add_claims_command
    from .diagnose import add_diagnose_command
    from .figure import add_figure_commands
    from .vision import add_vision_commands  # train, reproduce table1, bench (no torch import here)
    p = argparse.ArgumentParser(prog="ncspec", description="Executable specification of non-contrastive SSL.")
    sub = p.add_subparsers(dest="command", required=True)
    add_claims_command(sub)
    add_check_commands(sub)
    add_figure_commands(sub)
    add_vision_commands(sub)
    add_diagnose_command(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
