"""``r1searcher corpus build IN… --out FILE``: raw dumps → deduplicated ≤100-word passage JSONL.

``--out`` is written beside (``FILE.tmp``) and replaces ``FILE`` only when it is absent, empty or
a corpus this command wrote; a folder, one of the inputs, or any other file is refused first.
"""

from __future__ import annotations

import argparse
import sys

HELP = "build a passage corpus (≤100 words, title kept, deduplicated) from JSONL / TSV / KILT dumps"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="corpus_cmd", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="stream input files into a passage JSONL {id, title, text}")
    b.add_argument("inputs", nargs="+", metavar="IN", help="JSONL ({title,text} | {id,contents} | KILT), TSV; .gz ok")
    b.add_argument("--out", required=True, metavar="FILE",
                   help="output JSONL: new, empty, or a corpus this command wrote (replaced); anything else is refused")
    b.add_argument("--max-words", type=int, default=100, help="passage length cap in words (default 100)")
    b.add_argument("--quiet", action="store_true", help="do not print each malformed line")
    b.add_argument("--keep-partial", action="store_true",
                   help="if an input cannot be read to its end (a truncated .gz), keep the passages read before it in OUT "
                        "(the command still fails); by default nothing is written")


def check_out(out: str, inputs: list[str]) -> None:
    """Refuse an ``--out`` that would replace what the user owns: a folder, an input, another file."""
    from pathlib import Path

    from r1searcher.util.outdir import NotOursError
    from r1searcher.retrieval.corpus import is_corpus_file

    p = Path(out)
    if p.is_dir():
        raise NotOursError(f"--out {p} is a folder; give the corpus file to write, e.g. {p / 'passages.jsonl'}")
    tmp = p.with_name(p.name + ".tmp")  # write_passages writes here first
    for f in (p, tmp):
        if not f.exists():
            continue
        if any(Path(i).exists() and f.samefile(i) for i in inputs):
            raise NotOursError(f"--out {p}: {f} is also an input; write the corpus to another file")
        if f.is_dir() or not is_corpus_file(f):
            raise NotOursError(f"--out {p}: {f} exists and is not a corpus built by 'r1searcher corpus build' "
                               f"(its first line is not passage p0000000); choose another file or remove it")


def run(args: argparse.Namespace) -> int:
    from r1searcher.retrieval.corpus import CorpusStats, build_passages, report_to_stderr, write_passages

    check_out(args.out, args.inputs)
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
