"""``r1searcher data get NAME… | data list``: the paper's eval/train files and corpora from their public homes."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "download the paper's data sets and corpora (data get NAME…), or list them (data list)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", metavar="ACTION", required=True)
    g = sub.add_parser("get", help="download, check and convert data sets into the data root")
    g.add_argument("names", nargs="+", metavar="NAME",
                   help="hotpotqa 2wiki musique bamboogle (the paper's eval sets; 'eval' = all four), stage_1 stage_2 "
                        "('train'), hotpotqa-dev 2wiki-dev musique-dev bamboogle-test (FlashRAG), kilt-100w, "
                        "wiki18-100w (corpora); see `r1searcher data list`")
    g.add_argument("--out", metavar="DIR", help="data root to write into (default: $R1SEARCHER_DATA, else <cache>/data)")
    g.add_argument("--force", action="store_true", help="convert again even if present (plain downloads are fetched again)")
    g.add_argument("--revision", default="main", help="hub revision (branch, tag or commit) for hub files (default main)")
    ls = sub.add_parser("list", help="the known names: source, size, and where each is present")
    ls.add_argument("--out", metavar="DIR", help="data root to look in (default: $R1SEARCHER_DATA, else <cache>/data)")
    ls.add_argument("--json", action="store_true", help="print the rows as JSON lines")


def _list(args: argparse.Namespace) -> int:
    from r1searcher.data.sources.fetch import data_dir, status

    root = data_dir(args.out)
    rows = status(root)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"data root: {root}")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<6}  {r['size']:>9}  {r['present'] or '-'}")
        print(f"{'':<{w}}  {r['what']}; from {r['source']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.data.sources.fetch import data_dir, get
    from r1searcher.data.sources.registry import expand

    root = data_dir(args.out)
    for entry in expand(args.names):
        got = get(entry, root, force=args.force, revision=args.revision)
        unit = "questions" if entry.kind == "qa" else "passages"
        state = "fetched" if got.fetched else "already present"
        print(f"{entry.name}: {state}, {got.count} {unit} -> {got.path}")
        if entry.kind == "qa":
            try:
                found = resolve_dataset(entry.name)
            except FileNotFoundError:
                found = None
            if found is None or found.resolve() != got.path.resolve():
                now = f"resolves to {found} (searched first)" if found else "is not found by name"
                print(f"  note: --data {entry.name} {now}; pass {got.path} or set R1SEARCHER_DATA={root}",
                      file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return _list(args) if args.data_cmd == "list" else _get(args)
