"""The evaluation as one self-contained HTML page: the tables, the plots embedded as base64 PNG, the
metric definitions and the raw report, so that the file can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advgen.io import atomic_write_text
from advgen.metrics.augmentation import PRECISION_DROP
from advgen.metrics.info import METRICS
from advgen.metrics.plots import plot_title
from advgen.metrics.report import (
    AUGMENTATION_HEADER,
    augmentation_rows,
    augmentation_warnings,
    format_value,
    summary_rows,
    worst_columns,
)


def write_html(report: dict[str, Any], images: Sequence[str | Path], path: str | Path, *, title: str = "advgen evaluation") -> Path:
    """One self-contained HTML file: the headline table, per-class augmentation (drops flagged), validity
    per rule, per-column fidelity (worst first, folded), and the plots embedded as base64 PNG, so the
    file can be mailed or archived alone."""
    esc = html.escape

    def table(header: Sequence[str], rows: Sequence[Sequence[str]], flag_col: int | None = None) -> str:
        head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
        body = "".join(
            ("<tr class='flag'>" if flag_col is not None and r[flag_col] else "<tr>")
            + "".join(f"<td>{esc(str(c))}</td>" for c in r)
            + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    n = report["n"]
    warnings = augmentation_warnings(report)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#eee}img{max-width:100%}tr.flag td{background:#fde2e1}"
        ".warn{background:#fde2e1;border-left:4px solid #c0392b;padding:6px 10px;margin:1em 0}"
        "summary{cursor:pointer;font-weight:bold;margin:1em 0}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{esc(report['subject'])}: {n['synthetic']} synthetic, {n['real']} real training, {n['test']} real test "
        f"samples; detector <b>{esc(report['detector'])}</b>.</p>",
        "<h2>Summary</h2>",
        table(("metric", "value", "better", "ideal / reference"), summary_rows(report)),
    ]
    parts += [f"<p class='warn'>Warning: {esc(w)}</p>" for w in warnings]
    rows = augmentation_rows(report)
    if rows:
        parts += [
            "<h2>Augmentation</h2><p>Mean ± std over detector seeds; * marks the augmented classes; rows whose "
            f"precision fell by more than {PRECISION_DROP:.2f} are flagged.</p>",
            table(AUGMENTATION_HEADER, rows, flag_col=len(AUGMENTATION_HEADER) - 1),
        ]
    val = report.get("validity")
    if val:
        rule_rows = [
            (rule, format_value(val["real"]["per_rule"].get(rule)), format_value(rate)) for rule, rate in val["synthetic"]["per_rule"].items()
        ]
        parts += ["<h2>Validity per rule</h2>", table(("rule", "real", "synthetic"), rule_rows)]
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode("ascii")
        heading = plot_title(img)
        parts.append(f"<h2>{esc(heading)}</h2><img alt='{esc(heading)}' src='data:image/png;base64,{data}'>")
    scored = worst_columns(report)
    if scored:
        col_rows = [(c, f"{metric} complement", format_value(v)) for c, metric, v in scored]
        parts += [
            f"<details><summary>Fidelity of every column ({len(scored)} columns, most different first)</summary>",
            table(("column", "metric", "value (1.0: same distribution)"), col_rows),
            "</details>",
        ]
    parts.append("<h2>Metric definitions</h2>")
    parts.append(table(("metric", "better", "ideal", "meaning"), [(v.title, v.direction, v.ideal, v.meaning) for v in METRICS.values()]))
    skipped = report.get("skipped", {})
    if skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in skipped.items()) + "</ul>")
    parts.append(
        "<details><summary>Raw report (JSON)</summary><pre>" + esc(json.dumps(report, indent=1)) + "</pre></details>"
    )
    parts.append("</body></html>")
    target = Path(path)
    atomic_write_text(target, "\n".join(parts))
    return target
