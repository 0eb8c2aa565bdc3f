"""Report of a training run folder: PNG curves over steps and a markdown summary.

Reads ``RUN/log.jsonl`` (one object per optimizer step, written by ``rl/trainer.py``), optionally
``RUN/config.yaml`` and ``RUN/samples.jsonl``; writes ``RUN/report/{reward,f1,searches,length,kl}.png``
and ``RUN/report/summary.md``. Plots need matplotlib (``pip install matplotlib``); without it the
summary is still written.
"""

from __future__ import annotations

from pathlib import Path

from r1searcher.util.files import read_jsonl

#: PNG name -> (title, [(log key, label)]); a key missing from every record is skipped.
CURVES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "reward": ("reward", [("reward_mean", "mean reward"), ("reward_retrieval", "retrieval"), ("reward_format", "format"),
                          ("reward_format_penalty", "format penalty")]),
    "f1": ("answer quality", [("f1", "F1"), ("acc", "cover-EM (acc)"), ("em", "EM")]),
    "searches": ("search behaviour", [("searches_per_trajectory", "searches / trajectory"),
                                      ("frac_with_search", "fraction with ≥1 search")]),
    "length": ("response length (tokens)", [("response_len", "all (documents included)"),
                                            ("policy_tokens", "policy tokens")]),
    "kl": ("KL and entropy", [("kl", "KL to reference"), ("approx_kl_sampler", "sampler − trainer log-prob"),
                              ("entropy", "entropy (policy tokens)")]),
}

PHASES = ["sec_generate", "sec_retrieve", "sec_reward", "sec_reference", "sec_fwd_bwd"]


def load_log(run: str | Path) -> list[dict]:
    path = Path(run) / "log.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run} a training run folder?")
    records = read_jsonl(path, on_bad="raise").values()
    if not records:
        raise ValueError(f"{path} is empty: the run has not finished a step yet")
    return records


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (window ≥ 1) over the values seen so far."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def plot_curves(records: list[dict], out: Path, window: int | None = None) -> list[Path]:
    """One PNG per entry of :data:`CURVES`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = window or max(1, len(records) // 20)
    written = []
    for name, (title, keys) in CURVES.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        drawn = False
        for key, label in keys:
            xs, ys = _series(records, key)
            if not xs:
                continue
            (line,) = ax.plot(xs, smooth(ys, window), label=label if window == 1 else f"{label} (avg {window})")
            if window > 1:
                ax.plot(xs, ys, color=line.get_color(), alpha=0.25, linewidth=0.8)
            drawn = True
        if drawn:
            ax.set_title(title)
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written


def _mean(records: list[dict], key: str) -> float | None:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else None


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def summary_markdown(run: Path, records: list[dict], pngs: list[Path], note: str = "") -> str:
    """Markdown: setup, first vs last steps (averaged over a window), time per phase, samples."""
    k = max(1, min(5, len(records) // 4))
    head, tail = records[:k], records[-k:]
    lines = [f"# Training run `{run.name}`", ""]
    cfg_path = run / "config.yaml"
    if cfg_path.exists():
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        m, t, ro, rw = (cfg.get(s, {}) for s in ("model", "train", "rollout", "reward"))
        lines += [
            f"model `{m.get('name')}` (LoRA: {m.get('lora')}, layers {m.get('lora_layers')}), reward stage {rw.get('stage')}, "
            f"algo `{t.get('algo')}`, {t.get('questions_per_step')} questions × {ro.get('n_samples')} samples per step, "
            f"lr {t.get('lr')}, KL coef {t.get('kl_coef')}, data `{cfg.get('data', {}).get('path')}`.",
            "",
        ]
    total = records[-1].get("elapsed") or sum(r.get("seconds", 0.0) for r in records)
    lines += [f"{len(records)} optimizer steps (last: {records[-1]['step']}), {total / 60:.1f} min of wall time.", ""]
    lines += [f"| metric | first {k} steps | last {k} steps |", "|---|---|---|"]
    for key in ["reward_mean", "reward_std", "reward_retrieval", "reward_format", "f1", "acc", "em", "frac_with_search",
                "searches_per_trajectory", "frac_with_answer", "response_len", "policy_tokens", "kl", "entropy",
                "grad_norm", "clip_frac", "groups_dropped", "tokens_per_s"]:
        a, b = _mean(head, key), _mean(tail, key)
        if a is not None or b is not None:
            lines.append(f"| {key} | {_fmt(a)} | {_fmt(b)} |")
    lines += ["", "Seconds per step by phase (mean over all steps):", "", "| phase | s/step | share |", "|---|---|---|"]
    step_s = _mean(records, "seconds") or 0.0
    for key in PHASES:
        v = _mean(records, key)
        if v is not None:
            lines.append(f"| {key[4:]} | {v:.2f} | {100 * v / max(step_s, 1e-9):.0f}% |")
    lines.append(f"| **step** | {step_s:.2f} | 100% |")
    stops = {key[5:]: sum(r.get(key, 0) for r in tail) for key in records[-1] if key.startswith("stop_")}
    lines += ["", f"Stop reasons, last {k} steps: " + ", ".join(f"{s} {n}" for s, n in stops.items() if n), ""]
    if pngs:
        lines += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    if note:
        lines += [note, ""]
    samples = run / "samples.jsonl"
    if samples.exists():
        rows = read_jsonl(samples, on_bad="raise").values()
        last = [r for r in rows if r.get("step") == rows[-1].get("step")] if rows else []
        if last:
            lines += [f"## Sample trajectories (step {last[0]['step']})", ""]
            for r in last[:2]:
                lines += [f"**Q:** {r['question']}  (reward {r['reward']:.2f}, {r['n_searches']} searches, stop "
                          f"`{r['stop_reason']}`)", "", "```", r["text"][:2000], "```", ""]
    return "\n".join(lines)


def write_report(run: str | Path, out: str | Path | None = None, window: int | None = None) -> Path:
    """Write the PNGs and ``summary.md`` of a run; return the summary's path."""
    run = Path(run)
    records = load_log(run)
    out = Path(out) if out else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    note = ""
    try:
        pngs = plot_curves(records, out, window)
    except ImportError:
        pngs, note = [], "_(no plots: matplotlib is not installed)_"
    path = out / "summary.md"
    path.write_text(summary_markdown(run, records, pngs, note))
    return path
