"""``ncspec claims [ID ...] [--json]``: the registered claims, as a table or one claim whole."""
from __future__ import annotations

import json
import sys


def _cmd_claims(args) -> int:
    from ..claims import load_all, sort_key
    claims = load_all()
    wanted = [i.upper() for i in args.ids]
    unknown = [i for i in wanted if i not in claims]
    if unknown:
        print(f"ncspec claims: unknown claim ID {', '.join(map(repr, unknown))}; registered: "
              f"{', '.join(sorted(claims, key=sort_key))}.", file=sys.stderr)
        return 2
    ids = wanted or sorted(claims, key=sort_key)
    if args.json:
        json.dump([claims[c].to_dict() | {"node_ids": claims[c].node_ids()} for c in ids], sys.stdout, indent=2,
                  ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if wanted:
        for cid in ids:
            print_claim(claims[cid])
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    table = Table(title="ncspec claims (ncspec claims ID prints one whole, with its tests' pytest node ids)")
    for col in ("id", "title", "source", "tests"):
        table.add_column(col, overflow="fold")
    for cid in ids:
        c = claims[cid]
        table.add_row(c.id, escape(c.title), escape("\n".join(x.text for x in c.source)),
                      "\n".join(t.split("::")[-1] for t in c.tests))
    Console().print(table)
    return 0


def print_claim(claim, out=None) -> None:
    """One claim whole: what it states, measures and predicts, its tolerance and derivation, and each
    test as a node id ``pytest`` takes, with its file and line."""
    out = out or sys.stdout
    print(f"{claim.id}: {claim.title}", file=out)
    for label, text in (("source", claim.source_text), ("statement", claim.statement),
                        ("measures", claim.measures), ("prediction", claim.prediction),
                        ("tolerance", claim.tolerance), ("derivation", claim.derivation)):
        if text:
            print(f"  {label + ':':<12}{text}", file=out)
    print("  tests (run one with `pytest NODE_ID`):", file=out)
    for node, (path, line) in zip(claim.node_ids(), claim.locations):
        print(f"    {node}    ({path}:{line})", file=out)


def add_claims_command(sub) -> None:
    c = sub.add_parser("claims", help="list the registered claims, or print some whole")
    c.add_argument("ids", nargs="*", metavar="ID", help="claim IDs to print whole (H1, C7, …); none: the table")
    c.add_argument("--json", action="store_true", help="print the claims as JSON (with node_ids)")
    c.set_defaults(func=_cmd_claims)
