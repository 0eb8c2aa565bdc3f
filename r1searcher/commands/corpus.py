"""``r1searcher corpus build IN… --out FILE``: raw dumps → deduplicated ≤100-word passage JSONL."""

from __future__ import annotations

import argparse
import sys

HELP = "build a passage corpus (≤100 words, title kept, deduplicated) from JSONL / TSV / KILT dumps"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="corpus_cmd", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="stream input files into a passage JSONL {id, title, text}")
    b.add_argument("inputs", nargs="+", metavar="IN", help="JSONL ({title,text} | {id,contents} | KILT), TSV; .gz ok")
    b.add_argument("--out", required=True, metavar="FILE", help="output JSONL")
    b.add_argument("--max-words", type=int, default=100, help="passage length cap in words (default 100)")
    b.add_argument("--quiet", action="store_true", help="do not print each malformed line")
    b.add_argument("--keep-partial", action="store_true",
                   help="if an input cannot be read to its end (a truncated .gz), keep the passages read before it in OUT "
                        "(the command still fails); by default nothing is written")


def run(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.corpus import CorpusStats, build_passages, report_to_stderr, write_passages

    stats = CorpusStats()
    on_error = (lambda *_: None) if args.quiet else report_to_stderr
    stream = build_passages(args.inputs, args.max_words, on_error, stats)
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        stream = tqdm(stream, desc="passages", unit="psg", mininterval=1.0)
    sha, n = write_passages(stream, args.out, keep_partial=args.keep_partial)
    print(
        f"{n} passages from {stats.records} records → {args.out}\n"
        f"  duplicates dropped: {stats.duplicates}, empty records: {stats.empty}, malformed lines skipped: {stats.malformed}\n"
        f"  sha256: {sha}"
    )
    return 0
