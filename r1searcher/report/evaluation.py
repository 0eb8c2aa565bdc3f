"""Compare eval runs side by side: markdown tables (methods × datasets × metrics) and bar charts.

An eval run folder is what ``r1searcher eval --out DIR`` writes, ``DIR/<dataset>/metrics.json``, or
a folder that itself holds ``metrics.json`` (one method on one dataset, as the demo writes
``runs/demo/before/<method>/``). :func:`write_eval_report` writes ``OUT/eval_report.md`` and
``OUT/eval_{cover_em,f1}.png``; the charts need matplotlib, without it the markdown is still written.
"""

from __future__ import annotations

import json
from pathlib import Path

#: metric key -> title in tables and charts.
TITLES = {
    "em": "EM",
    "cover_em": "cover-EM",
    "f1": "F1",
    "judge": "judge",
    "searches_per_question": "searches/question",
    "seconds_per_question": "seconds/question",
}
#: metrics stored as percentages (``metrics.aggregate``), shown with one decimal like the paper's tables.
PERCENT = {"em", "cover_em", "f1", "judge"}
#: one table each in the report, in this order (a metric null in every cell is left out).
REPORT_METRICS = ("cover_em", "f1", "judge", "searches_per_question", "seconds_per_question")
#: one bar chart each in the report.
CHART_METRICS = ("cover_em", "f1")
ROW_KEYS = ("n", "em", "cover_em", "f1", "judge", "searches_per_question", "seconds_per_question")


def find_metrics(path: str | Path) -> list[Path]:
    """The metrics.json files of one eval run: the folder's own, else those of its immediate subfolders."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return [path / "metrics.json"]
    if not path.is_dir():
        return []
    return [d / "metrics.json" for d in sorted(path.iterdir()) if (d / "metrics.json").is_file()]


def _result(metrics_path: Path) -> dict:
    """One (method, dataset) result; the dataset is named by its file's stem, else by the folder."""
    m = json.loads(metrics_path.read_text())
    dataset = Path(m["dataset"]).stem if m.get("dataset") else metrics_path.parent.name
    return {"method": str(m.get("method", "?")), "dataset": dataset, **{k: m.get(k) for k in ROW_KEYS}}


def _unique(items: list[str]) -> list[str]:
    """Items in first-seen order, without repeats."""
    return list(dict.fromkeys(items))


def _run_labels(paths: list[Path], results: list[list[dict]]) -> list[str]:
    """Each run's method when every run has one and they differ, else folder names (else paths as given)."""
    methods = [_unique([r["method"] for r in res]) for res in results]
    if all(len(m) == 1 for m in methods) and len({m[0] for m in methods}) == len(paths):
        return [m[0] for m in methods]
    names = [p.resolve().name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def collect(paths: list[str | Path], labels: list[str] | None = None) -> list[dict]:
    """One row per (run, dataset): ``run`` (label), ``method``, ``dataset``, ``n``, ``em``, ``cover_em``,
    ``f1``, ``judge``, ``searches_per_question``, ``seconds_per_question`` (None when not recorded).

    ``labels`` names the runs in order; by default see :func:`_run_labels`. A run holding several
    methods gets one row label per method, ``<label>/<method>``.
    """
    paths = [Path(p) for p in paths]
    if labels is not None and (len(labels) != len(paths) or len(set(labels)) != len(labels)):
        raise ValueError(f"give one distinct label per eval run: {len(labels)} labels for {len(paths)} runs")
    results = []
    for p in paths:
        files = find_metrics(p)
        if not files:
            raise FileNotFoundError(f"no metrics.json in {p} or its subfolders: is it an eval run folder?")
        results.append([_result(f) for f in files])
    rows, seen = [], set()
    for label, res in zip(labels or _run_labels(paths, results), results):
        several = len({r["method"] for r in res}) > 1
        for r in res:
            row = {"run": f"{label}/{r['method']}" if several else label, **r}
            if (row["run"], row["dataset"]) in seen:
                raise ValueError(f"two results for {row['run']} on {row['dataset']}: label the runs apart (--label)")
            seen.add((row["run"], row["dataset"]))
            rows.append(row)
    return rows


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if metric in PERCENT else f"{value:.2f}"


def _average(metric: str, values: list[float | None]) -> str:
    """Mean of the cells present; marked ``*`` when some dataset is missing."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    return _fmt(metric, sum(present) / len(present)) + ("*" if len(present) < len(values) else "")


def markdown_table(rows: list[dict],
                   metrics: tuple[str, ...] = ("cover_em", "f1", "judge", "searches_per_question")) -> str:
    """One row per run label, one column group per dataset (a column per metric), plus an average group
    when there are several datasets. Missing cells read ``–``."""
    runs, datasets = _unique([r["run"] for r in rows]), _unique([r["dataset"] for r in rows])
    cells = {(r["run"], r["dataset"]): r for r in rows}
    groups = datasets + (["average"] if len(datasets) > 1 else [])
    header = [g if len(metrics) == 1 else f"{g} {TITLES[m]}" for g in groups for m in metrics]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    starred = False
    for run in runs:
        out = []
        for m in metrics:
            values = [cells[(run, d)][m] if (run, d) in cells else None for d in datasets]
            out.append([_fmt(m, v) for v in values] + ([_average(m, values)] if len(datasets) > 1 else []))
        cols = [out[i][j] for j in range(len(groups)) for i in range(len(metrics))]
        starred |= any(c.endswith("*") for c in cols)
        lines.append(f"| {run} | " + " | ".join(cols) + " |")
    if starred:
        lines += ["", "\\* averaged over the datasets present"]
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: str | Path, metric: str = "f1") -> Path:
    """A grouped bar chart PNG: datasets on the x axis, one bar per run label. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, datasets = _unique([r["run"] for r in rows]), _unique([r["dataset"] for r in rows])
    cells = {(r["run"], r["dataset"]): r[metric] for r in rows}
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(runs) * len(datasets) + 2), 3.6))
    for i, run in enumerate(runs):
        pts = [(j, cells.get((run, d))) for j, d in enumerate(datasets)]
        pts = [(j, v) for j, v in pts if v is not None]
        ax.bar([j - 0.4 + width * (i + 0.5) for j, _ in pts], [v for _, v in pts], width, label=run)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel(TITLES[metric] + (" (%)" if metric in PERCENT else ""))
    ax.set_title(f"{TITLES[metric]} by dataset")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _n_line(rows: list[dict]) -> str:
    ns = {r["n"] for r in rows}
    if len(ns) == 1:
        return f"Every cell scores n = {ns.pop()} questions."
    return "Questions per cell differ: " + ", ".join(f"{r['run']} on {r['dataset']} n = {r['n']}" for r in rows) + "."


def write_eval_report(paths: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Write ``out/eval_report.md`` and ``out/eval_<metric>.png``; return the markdown's path."""
    rows = collect(paths, labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation runs", "", "Runs: " + ", ".join(f"`{p}`" for p in paths) + ". "
             "EM, cover-EM, F1 and judge are percentages.", ""]
    for metric in REPORT_METRICS:
        if any(r[metric] is not None for r in rows):
            lines += [f"## {TITLES[metric]}", "", markdown_table(rows, (metric,)), ""]
    lines += [_n_line(rows), ""]
    try:
        pngs = [bar_chart(rows, out / f"eval_{m}.png", m) for m in CHART_METRICS]
        lines += [f"![{p.stem}]({p.name})" for p in pngs]
    except ImportError:
        lines.append("_(no charts: matplotlib is not installed)_")
    path = out / "eval_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
