"""The files `lookalike evaluate` writes: tables, matrices, plots and a browsable HTML page.

Tables come in three forms for three readers: results.md for people, results.csv for
spreadsheets, results.json for programs. The plots show what a single number hides: the
ROC/PR curves compare methods at every operating point, and the histograms of positive vs
negative pair scores show how much they overlap (e.g. same-looking backgrounds). index.html
puts the tables and plots next to each query's top 5 results, so one sees *which* photos fail.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import write_errors_csv
from lookalike.evaluation.compare_report import write_matrix_csv
from lookalike.evaluation.metrics import (
    DISTRACTOR,
    average_precision,
    pair_scores,
    precision_recall_curve,
    query_indices,
    roc_curve,
)
from lookalike.evaluation.results import EvaluationResult
from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image

THUMB_SIZE = 160
TOP_K = 5

# (key, header, format) of the main table, in reading order.
COLUMNS = [
    ("method", "method", "{}"),
    ("map", "mAP", "{:.3f}"),
    ("p_at_1", "P@1", "{:.3f}"),
    ("roc_auc", "ROC-AUC", "{:.3f}"),
    ("pair_ap", "pair AP", "{:.3f}"),
    ("tpr_at_fpr1", "TPR@FPR1%", "{:.3f}"),
    ("threshold_fpr1", "thr@FPR1%", "{:.4g}"),
    ("best_f1", "best F1", "{:.3f}"),
    ("threshold_best_f1", "thr@best F1", "{:.4g}"),
    ("extract_ms_per_image", "extract ms/img", "{:.1f}"),
    ("score_us_per_pair", "score µs/pair", "{:.3g}"),
]


def _format(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return spec.format(value)


def markdown_table(rows: Iterable[dict[str, Any]]) -> str:
    """The main results table (one line per method and colour mode) in Markdown."""
    lines = ["| " + " | ".join(header for _, header, _ in COLUMNS) + " |",
             "|" + "|".join("---" if key == "method" else "---:" for key, _, _ in COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(k), f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def landmark_table(rows: list[dict[str, Any]]) -> str:
    """AP per landmark (mean AP of its queries), landmarks as rows, methods as columns."""
    landmarks = sorted({name for row in rows for name in row["ap_per_landmark"]})
    lines = ["| landmark | " + " | ".join(row["method"] for row in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    for name in landmarks:
        cells = [_format(row["ap_per_landmark"].get(name), "{:.3f}") for row in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def dataset_summary(result: EvaluationResult) -> dict[str, Any]:
    labels = result.labels
    queries = query_indices(labels)
    first = result[0] if len(result) else {}
    return {
        "dataset": result.root,
        "photos": len(labels),
        "landmarks": len({label for label in labels if label != DISTRACTOR}),
        "distractors": sum(label == DISTRACTOR for label in labels),
        "queries": len(queries),
        "positive_pairs": first.get("positive_pairs"),
        "negative_pairs": first.get("negative_pairs"),
        "unreadable": len(result.errors),
    }


def write_tables(result: EvaluationResult, outdir: Path) -> None:
    rows = list(result)
    summary = dataset_summary(result)
    with open(outdir / "results.json", "w", encoding="utf-8") as handle:
        json.dump({**summary, "results": [_finite(row) for row in rows], "errors": result.errors},
                  handle, indent=2, ensure_ascii=False)
    landmarks = sorted({name for row in rows for name in row["ap_per_landmark"]})
    fields = [key for key in (rows[0] if rows else {}) if key not in ("ap_per_landmark", "settings")]
    with open(outdir / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*fields, *(f"ap:{name}" for name in landmarks), "settings"])
        for row in rows:
            writer.writerow([*(row[key] for key in fields),
                             *(row["ap_per_landmark"].get(name, "") for name in landmarks),
                             json.dumps(row["settings"], sort_keys=True)])
    text = [
        "# lookalike evaluate",
        "",
        (f"Dataset `{summary['dataset']}`: {summary['photos']} photos, {summary['landmarks']} "
        f"landmarks, {summary['distractors']} distractors; {summary['queries']} queries; "
        f"{summary['positive_pairs']} positive and {summary['negative_pairs']} negative pairs."),
        "",
        ("Retrieval (mAP, P@1): each photo of a landmark with at least two photos queries every "
        "other photo, distractors included. Pairs (ROC-AUC, pair AP, TPR at FPR <= 1%, best F1): "
        "every unordered pair, scored by the mean of both directions, positive when both show "
        "the same landmark. Thresholds accept scores >= the value. Ties are grouped, as in "
        "scikit-learn's `average_precision_score`. Times: extraction per computed image "
        "(cache hits excluded; methods extracted in one pass, such as the hashes, share the "
        "pass's time evenly), scoring per ordered pair."),
        "",
        markdown_table(rows),
        "",
        "## AP per landmark (mean over its queries)",
        "",
        landmark_table(rows),
        "",
    ]
    if result.errors:
        text += ["## Files left out (unreadable)", ""]
        text += [f"- `{path}`: {reason}" for path, reason in sorted(result.errors.items())]
        text.append("")
    (outdir / "results.md").write_text("\n".join(text), encoding="utf-8")


def write_matrices(result: EvaluationResult, outdir: Path) -> None:
    for label, matrix in result.matrices.items():
        write_matrix_csv(matrix, outdir / f"{label}.csv")


# -- plots ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One colour per method name; grayscale runs dashed in the same colour."""
    plt = _pyplot()
    names = list(dict.fromkeys(row["name"] for row in rows))
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {row["method"]: {"color": colours(names.index(row["name"]) % colours.N),
                            "linestyle": "--" if row["gray"] else "-"} for row in rows}


def _log_roc(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC's straight segments sampled densely, so they stay true on a log FPR axis."""
    grid = np.geomspace(1e-5, 1.0, 400)
    x = np.r_[fpr, grid]
    y = np.r_[tpr, np.interp(grid, fpr, tpr)]
    order = np.lexsort((y, x))  # both rise along the curve, so (x, y) order walks it
    return np.maximum(x[order], 1e-5), y[order]


def plot_curves(result: EvaluationResult, outdir: Path) -> list[str]:
    """roc.png (linear and log FPR side by side) and pr.png, every method on each."""
    plt = _pyplot()
    rows = list(result)
    styles = _styles(rows)
    fig_roc, (linear, logx) = plt.subplots(1, 2, figsize=(13, 5.5))
    fig_pr, pr = plt.subplots(figsize=(10, 5.5))
    for row in rows:
        scores, positive = pair_scores(result.matrices[row["method"]].scores, result.labels)
        fpr, tpr, _ = roc_curve(scores, positive)
        precision, recall, _ = precision_recall_curve(scores, positive)
        style = styles[row["method"]]
        linear.plot(fpr, tpr, label=f"{row['method']} (AUC {_format(row['roc_auc'], '{:.3f}')})",
                    drawstyle="default", **style)
        logx.plot(*_log_roc(fpr, tpr), **style)
        pr.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], drawstyle="steps-pre",
                label=f"{row['method']} (AP {_format(row['pair_ap'], '{:.3f}')})", **style)
    base_rate = rows[0]["positive_pairs"] / max(1, rows[0]["positive_pairs"] + rows[0]["negative_pairs"])
    linear.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    linear.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
               title="ROC, all pairs")
    logx.set(xscale="log", xlabel="false positive rate (log)", ylabel="true positive rate",
             xlim=(1e-4, 1), ylim=(0, 1.01), title="ROC, low false-positive rates")
    logx.axvline(0.01, color="0.5", linewidth=0.8, linestyle=":")
    logx.text(0.0105, 0.97, "FPR 1%", color="0.4", fontsize=8)
    linear.legend(fontsize=7, loc="lower right", ncol=2 if len(rows) > 8 else 1)
    for axis in (linear, logx):
        axis.grid(alpha=0.3)
    fig_roc.tight_layout()
    fig_roc.savefig(outdir / "roc.png", dpi=110)
    pr.axhline(base_rate, color="0.7", linewidth=0.8)
    pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-recall, all pairs")
    pr.grid(alpha=0.3)
    pr.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves
    fig_pr.tight_layout()
    fig_pr.savefig(outdir / "pr.png", dpi=110)
    plt.close(fig_roc)
    plt.close(fig_pr)
    return ["roc.png", "pr.png"]


def _linear_bins(scores: np.ndarray) -> np.ndarray | int:
    """One bin per step for scores on a coarse grid (hash bit counts), else 50 equal bins."""
    values = np.unique(scores)
    if values.size < 2:
        return 10
    step = np.diff(values).min()
    if (values[-1] - values[0]) / step <= 150:
        return np.arange(values[0] - step / 2, values[-1] + step, step)
    return np.linspace(values[0], values[-1], 50)


def plot_histograms(result: EvaluationResult, outdir: Path) -> dict[str, str]:
    """hist-<method>.png: positive vs negative pair scores (each normalised to its own count)."""
    plt = _pyplot()
    written = {}
    for row in result:
        scores, positive = pair_scores(result.matrices[row["method"]].scores, result.labels)
        fig, axis = plt.subplots(figsize=(6.5, 3.8))
        skewed = scores.min() >= 0 and scores.max() > 20 * max(np.median(scores), 1)
        if skewed:  # counts (e.g. keypoint matches) have a long tail: bin them on a log scale
            bins = np.unique(np.r_[0, np.geomspace(1, scores.max() + 1, 50) - 1])
            axis.set_xscale("symlog", linthresh=1)
        else:
            bins = _linear_bins(scores)
        for selected, name, colour in ((~positive, "different / distractor", "tab:red"),
                                       (positive, "same landmark", "tab:green")):
            if selected.any():
                weights = np.full(int(selected.sum()), 1.0 / selected.sum())
                axis.hist(scores[selected], bins=bins, weights=weights, alpha=0.55, color=colour,
                          label=f"{name} ({int(selected.sum())})")
        for key, text, style in (("threshold_fpr1", "FPR 1%", ":"), ("threshold_best_f1", "best F1", "--")):
            value = row.get(key)
            if value is not None and math.isfinite(value):
                axis.axvline(value, color="0.3", linestyle=style, linewidth=1, label=f"{text}: {value:.4g}")
        axis.set(xlabel="pair score (mean of both directions)", ylabel="share of pairs",
                 title=f"{row['method']}: same landmark vs not")
        axis.legend(fontsize=8)
        fig.tight_layout()
        name = f"hist-{row['method']}.png"
        fig.savefig(outdir / name, dpi=100)
        plt.close(fig)
        written[row["method"]] = name
    return written


# -- HTML ----------------------------------------------------------------------------------------
def write_thumbnails(result: EvaluationResult, outdir: Path) -> list[str | None]:
    """thumbs/NNNN.jpg per photo (None where a photo cannot be shown)."""
    folder = outdir / "thumbs"
    folder.mkdir(exist_ok=True)
    names: list[str | None] = []
    options = LoadOptions(min_long_side=THUMB_SIZE * 2)
    for index, path in enumerate(result.paths):
        name = f"thumbs/{index:04d}.jpg"
        try:
            image = load_image(path, options)
            image.thumbnail((THUMB_SIZE, THUMB_SIZE))
            image.save(outdir / name, "JPEG", quality=82)
            names.append(name)
        except (ImageLoadError, OSError):
            names.append(None)
    return names


def _img(thumb: str | None, title: str) -> str:
    if thumb is None:
        return f'<span class="missing" title="{html.escape(title)}">?</span>'
    return f'<img src="{thumb}" loading="lazy" alt="" title="{html.escape(title)}">'


def _top_results_html(result: EvaluationResult, row: dict[str, Any], thumbs: list) -> str:
    scores = result.matrices[row["method"]].scores
    labels = np.asarray(result.labels, dtype=object)
    names = result.matrices[row["method"]].queries
    parts = []
    for q in query_indices(result.labels):
        order = [j for j in np.argsort(-scores[q], kind="stable") if j != q]
        others = np.r_[0:q, q + 1:len(labels)]
        ap = average_precision(scores[q, others], labels[others] == labels[q])
        cells = [(f'<td class="query">{_img(thumbs[q], names[q])}<br>'
                  f'<b>{html.escape(labels[q])}</b><br>AP {ap:.2f}</td>')]
        for j in order[:TOP_K]:
            right = labels[j] == labels[q]
            mark = "✓" if right else "✗"
            cells.append(f'<td class="{"right" if right else "wrong"}">'
                         f'{_img(thumbs[j], f"{names[j]} ({labels[j]})")}<br>'
                         f'{mark} {scores[q, j]:.4g}<br><small>{html.escape(labels[j])}</small></td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    return "<table class=\"top\">" + "\n".join(parts) + "</table>"


def _html_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for _, header, _ in COLUMNS)
    body = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(_format(row.get(k), f))}</td>" for k, _, f in COLUMNS)
        body.append(f"<tr>{cells}</tr>")
    return f"<table class=\"results\"><tr>{head}</tr>{''.join(body)}</table>"


def _landmark_html(rows: list[dict[str, Any]]) -> str:
    landmarks = sorted({name for row in rows for name in row["ap_per_landmark"]})
    head = "<th>landmark</th>" + "".join(f"<th>{html.escape(r['method'])}</th>" for r in rows)
    body = []
    for name in landmarks:
        cells = "".join(f"<td>{_format(r['ap_per_landmark'].get(name), '{:.2f}')}</td>" for r in rows)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table class=\"results\"><tr>{head}</tr>{''.join(body)}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table.results { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
table.results td, table.results th { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
table.results td:first-child, table.results th:first-child { text-align: left; }
table.top td { vertical-align: top; text-align: center; font-size: 11px; padding: 3px;
  border: 3px solid transparent; width: 168px; }
table.top td.query { background: #eef; }
table.top td.right { border-color: #2a2; } table.top td.wrong { border-color: #d33; }
table.top img { max-width: 160px; max-height: 160px; }
span.missing { display: inline-block; width: 160px; height: 100px; background: #ddd; }
img.plot { max-width: 100%; } img.hist { width: 49%; max-width: 650px; }
summary { font-size: 1.1em; font-weight: bold; cursor: pointer; margin: 0.5em 0; }
"""


def write_html(result: EvaluationResult, outdir: Path, plots: list[str],
               histograms: dict[str, str], thumbs: list) -> None:
    rows = list(result)
    summary = dataset_summary(result)
    sections = [
        (f"<h1>lookalike evaluate</h1><p>Dataset <code>{html.escape(str(summary['dataset']))}</code>: "
        f"{summary['photos']} photos, {summary['landmarks']} landmarks, {summary['distractors']} "
        f"distractors, {summary['queries']} queries, {summary['positive_pairs']} positive and "
        f"{summary['negative_pairs']} negative pairs. Tables also in "
        f'<a href="results.md">results.md</a>, <a href="results.csv">results.csv</a>, '
        f'<a href="results.json">results.json</a>.</p>'),
        "<h2>Results</h2>", _html_table(rows),
        ("<p>mAP / P@1: each query ranks all other photos (distractors included). Pair metrics: "
        "all unordered pairs, score = mean of both directions. Thresholds accept scores &ge; "
        "the value.</p>"),
        "<h2>Curves</h2>", *(f'<img class="plot" src="{name}" alt="{name}">' for name in plots),
        "<h2>Positive vs negative pair scores</h2>",
        "".join(f'<img class="hist" src="{name}" alt="{name}" loading="lazy">'
                for name in histograms.values()),
        "<h2>AP per landmark</h2>", _landmark_html(rows),
        (f"<h2>Top {TOP_K} results per query</h2><p>Green ✓ = same landmark, red ✗ = another "
         "landmark or a distractor; the number is the score. Ties keep dataset order.</p>"),
    ]
    for index, row in enumerate(rows):
        sections.append(f"<details{' open' if index == 0 else ''}><summary>{html.escape(row['method'])}"
                        f" — mAP {_format(row['map'], '{:.3f}')}</summary>"
                        f"{_top_results_html(result, row, thumbs)}</details>")
    if result.errors:
        items = "".join(f"<li><code>{html.escape(p)}</code>: {html.escape(r)}</li>"
                        for p, r in sorted(result.errors.items()))
        sections.append(f"<h2>Files left out</h2><ul>{items}</ul>")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>lookalike evaluate</title><style>{STYLE}</style></head><body>"
            + "\n".join(sections) + "</body></html>")
    (outdir / "index.html").write_text(page, encoding="utf-8")


def write_evaluation(result: EvaluationResult, outdir: str | os.PathLike,
                     quiet: bool = True) -> Path:
    """Every output of `lookalike evaluate` into `outdir`; returns the index.html path."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(result, out)
    write_matrices(result, out)
    errors_path = out / "errors.csv"
    if result.errors:
        write_errors_csv(result.errors, errors_path)
    elif errors_path.exists():
        errors_path.unlink()  # a stale list from an earlier run would mislead
    plots = plot_curves(result, out) if len(result) else []
    histograms = plot_histograms(result, out) if len(result) else {}
    thumbs = write_thumbnails(result, out)
    write_html(result, out, plots, histograms, thumbs)
    return out / "index.html"
