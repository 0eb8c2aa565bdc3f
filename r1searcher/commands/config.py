"""``r1searcher config``: every knob of the one config tree, with its type, default and help.

    r1searcher config                          # every key: type, default, help
    r1searcher config --section train          # one section
    r1searcher config show --config stage2 train.lr=1e-6   # the resolved tree, as a run saves it
"""

from __future__ import annotations

import argparse

HELP = "list every config key (type, default, help), or show a resolved config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.config import sections

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "sections:\n" + "\n".join(f"  {name:<10} {text}" for name, text in sections())
    p.add_argument("--section", help="only this section's keys")
    sub = p.add_subparsers(dest="action", metavar="ACTION", title="actions (default: list every key)")
    show = sub.add_parser("show", help="the resolved config, as a run saves it (API keys masked)")
    show.add_argument("--config", help="a YAML config (a file or a packaged name: tiny, stage1, stage2, …)")
    show.add_argument("--section", dest="show_section", help="only this section's values")
    show.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. train.lr=1e-6)")


def describe(section: str | None = None) -> str:
    """The text ``r1searcher config`` prints: one block per key (``key (type) = default``, then its help)."""
    from r1searcher.config import config_fields

    rows = [r for r in config_fields() if section is None or r["key"].split(".")[0] == section]
    lines = []
    for r in rows:
        lines.append(f"{r['key']} ({r['type']}) = {r['default']!r}")
        lines.append(f"    {r['help']}")
    return "\n".join(lines)


def environment() -> str:
    """The environment variables that are not a field's fallback (those are named in each field's help)."""
    from r1searcher.settings.env import PROCESS_ENV

    return "\n".join(["", "environment (not config keys):"] + [f"{k}\n    {v}" for k, v in PROCESS_ENV.items()])


def run(args: argparse.Namespace) -> int:
    import yaml

    from r1searcher.config import load_config, sections

    section = getattr(args, "show_section", None) or args.section
    names = [name for name, _ in sections()] + ["out"]
    if section and section not in names:
        raise ValueError(f"unknown section {section!r}; choose one of {', '.join(names)}")
    if args.action != "show":
        print(describe(section))
        if section is None:
            print(environment())
        return 0
    tree = load_config(args.config, list(args.overrides)).to_dict()
    print(yaml.safe_dump({section: tree[section]} if section else tree, sort_keys=False).rstrip())
    return 0
