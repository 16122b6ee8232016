"""A report as one self-contained HTML page: inline CSS and SVG, no script, no network.

The page is drawn from the report's dictionary (:meth:`Report.to_dict`), whose histograms have
a fixed number of bins, so its size depends on the number of columns, never on the rows
(about 6 kB per column).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:0}
.meta{color:#5b6573}.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px;
margin:10px 0}
.verdict{font-size:16px;font-weight:600;padding:10px 14px;border-radius:8px;display:inline-block}
.bad{background:#fde8e8;color:#9b1c1c}.good{background:#e6f4ea;color:#1e6b34}
.warn{background:#fff4de;color:#8a5300}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid #eceff3;vertical-align:top}th{font-weight:600;color:#5b6573}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.cols{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
svg text{font-size:10px;fill:#5b6573}
"""
_REF, _CUR = "#8aa4c8", "#e07b39"


def render_html(report: Mapping[str, Any], title: str = "modelyard drift report") -> str:
    """The report as a standalone HTML page.

    >>> page = render_html({"columns": [], "dataset_drift": False, "drift_share": 0.0})
    >>> page.startswith("<!doctype html>") and "No dataset drift" in page
    True
    """
    columns = list(report.get("columns", []))
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        _header(report),
        _verdict(report, columns),
    ]
    if columns:
        parts += ["<h2>Drift by column</h2>", _scores_chart(columns), _summary_table(columns)]
    quality = [finding for column in columns for finding in column.get("quality", [])]
    quality += list(report.get("quality", []))
    parts += ["<h2>Data quality</h2>", _findings(quality)]
    if report.get("multivariate"):
        parts += ["<h2>Multivariate drift</h2>", _multivariate(report["multivariate"])]
    if report.get("performance"):
        parts += ["<h2>Performance</h2>", _performance(report["performance"])]
    if columns:
        parts += [
            "<h2>Distributions</h2>",
            f"<p class=legend><span style='background:{_REF}'></span>reference"
            f"<span style='background:{_CUR}'></span>current</p>",
            "<div class=cols>", *(_column_card(column) for column in columns), "</div>",
        ]
    parts.append("</main></body></html>")
    return "".join(parts)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return escape(str(value))


def _header(report: Mapping[str, Any]) -> str:
    sides = []
    for side in ("reference", "current"):
        info = report.get(side) or {}
        if info:
            sides.append(
                f"{side}: {escape(str(info.get('source', '?')))} ({_number(info.get('rows'))} rows)"
            )
    created = report.get("created_at")
    if created:
        sides.append(f"created {escape(str(created))}")
    return f"<p class=meta>{' · '.join(sides)}</p>"


def _verdict(report: Mapping[str, Any], columns: Sequence[Mapping[str, Any]]) -> str:
    share = float(report.get("drift_share") or 0.0)
    drifted = [c["name"] for c in columns if c.get("drift_detected")]
    if report.get("dataset_drift"):
        text, css = f"Dataset drift: {share:.0%} of the features drifted", "bad"
    elif drifted:
        text, css = f"No dataset drift ({share:.0%} of the features drifted)", "warn"
    else:
        text, css = "No dataset drift", "good"
    names = ", ".join(escape(str(name)) for name in drifted[:12])
    more = f" and {len(drifted) - 12} more" if len(drifted) > 12 else ""
    detail = f"<p>Drifted: {names}{more}</p>" if drifted else ""
    return f"<div class='verdict {css}'>{escape(text)}</div>{detail}"


def _badge(drifted: bool, note: str | None = None) -> str:
    if note:
        return "<span class='badge warn'>not computed</span>"
    if drifted:
        return "<span class='badge bad'>drift</span>"
    return "<span class='badge good'>ok</span>"


def _summary_table(columns: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    ordered = sorted(columns, key=lambda c: (not c.get("drift_detected"), _ratio(c) * -1))
    for c in ordered:
        rows.append(
            f"<tr><td>{escape(str(c['name']))}</td><td>{escape(str(c.get('kind')))}</td>"
            f"<td>{escape(str(c.get('role', 'feature')))}</td><td>{_number(c.get('method'))}</td>"
            f"<td class=n>{_number(c.get('score'))}</td>"
            f"<td class=n>{_number(c.get('threshold'))}</td>"
            f"<td>{_badge(bool(c.get('drift_detected')), c.get('note'))}</td>"
            f"<td class=n>{len(c.get('quality', []))}</td></tr>"
        )
    head = ("<tr><th>column</th><th>kind</th><th>role</th><th>method</th><th>score</th>"
            "<th>threshold</th><th>drift</th><th>quality findings</th></tr>")
    return f"<div class=card><table>{head}{''.join(rows)}</table></div>"


def _ratio(column: Mapping[str, Any]) -> float:
    score, threshold = column.get("score"), column.get("threshold")
    if score is None or not threshold:
        return 0.0
    return float(score) / float(threshold)


def _scores_chart(columns: Sequence[Mapping[str, Any]]) -> str:
    """Each column's score as a multiple of its threshold; the line at 1 is the threshold."""
    shown = sorted(columns, key=_ratio, reverse=True)[:40]
    width, label_w, bar_h = 720, 170, 16
    top = max([2.0, *(_ratio(c) for c in shown)])
    scale = (width - label_w - 60) / top
    height = bar_h * len(shown) + 24
    out = [f"<div class=card><svg width='100%' viewBox='0 0 {width} {height}' role=img "
           "aria-label='drift score divided by threshold, per column'>"]
    for i, c in enumerate(shown):
        y = 4 + i * bar_h
        ratio = _ratio(c)
        colour = "#c0392b" if c.get("drift_detected") else "#7f8c9d"
        out.append(
            f"<text x='{label_w - 6}' y='{y + 11}' text-anchor=end>"
            f"{escape(str(c['name'])[:28])}</text>"
            f"<rect x='{label_w}' y='{y + 2}' width='{max(ratio * scale, 0.5):.1f}' "
            f"height='{bar_h - 5}' fill='{colour}'/>"
            f"<text x='{label_w + ratio * scale + 4:.1f}' y='{y + 11}'>{ratio:.2f}×</text>"
        )
    x = label_w + scale
    out.append(
        f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height - 16}' stroke='#1d2430' "
        f"stroke-dasharray='3 3'/><text x='{x:.1f}' y='{height - 4}' text-anchor=middle>"
        "threshold</text></svg></div>"
    )
    return "".join(out)


def _findings(findings: Sequence[Mapping[str, Any]]) -> str:
    if not findings:
        return "<div class='card good'>No quality findings.</div>"
    rows = [
        f"<tr><td><span class='badge {'bad' if f.get('severity') == 'error' else 'warn'}'>"
        f"{escape(str(f.get('severity', '')))}</span></td>"
        f"<td>{escape(str(f.get('rule', '')))}</td><td>{escape(str(f.get('column') or '—'))}</td>"
        f"<td>{escape(str(f.get('message', '')))}</td></tr>"
        for f in findings
    ]
    head = "<tr><th>severity</th><th>rule</th><th>column</th><th>finding</th></tr>"
    return f"<div class=card><table>{head}{''.join(rows)}</table></div>"


def _multivariate(results: Sequence[Mapping[str, Any]]) -> str:
    out = ["<div class=card><table><tr><th>method</th><th>score</th><th>threshold</th>"
           "<th>drift</th><th>driven by</th></tr>"]
    for r in results:
        top = sorted((r.get("contributions") or {}).items(), key=lambda kv: -kv[1])[:5]
        driven = ", ".join(f"{escape(str(k))} ({v:.0%})" for k, v in top) or escape(
            str(r.get("note", "—"))
        )
        out.append(
            f"<tr><td>{escape(str(r.get('method')))}</td><td class=n>{_number(r.get('score'))}"
            f"</td><td class=n>{_number(r.get('threshold'))}</td>"
            f"<td>{_badge(bool(r.get('drift_detected')))}</td><td>{driven}</td></tr>"
        )
    out.append("</table></div>")
    return "".join(out)


def _performance(section: Mapping[str, Any]) -> str:
    out = [f"<div class=card><p>task: {escape(str(section.get('task')))}</p><table>"
           "<tr><th>metric</th><th>realised</th><th>estimated (band)</th></tr>"]
    realised = section.get("realised") or {}
    estimated = section.get("estimated") or {}
    warnings: set[str] = set()
    for name in dict.fromkeys([*realised, *estimated]):
        if name in ("rows", "notes"):
            continue
        estimate = estimated.get(name) or {}
        warnings.update(estimate.get("warnings") or [])
        band = (
            f"{_number(estimate.get('value'))} ({_number(estimate.get('lower'))}–"
            f"{_number(estimate.get('upper'))})" if estimate else "—"
        )
        out.append(f"<tr><td>{escape(str(name))}</td><td class=n>{_number(realised.get(name))}"
                   f"</td><td class=n>{band}</td></tr>")
    out.append("</table>")
    notes = realised.get("notes") or {}
    out += [f"<p class=meta>{escape(str(k))}: {escape(str(v))}</p>" for k, v in notes.items()]
    out += [f"<p class='warn'>{escape(w)}</p>" for w in sorted(warnings)]
    out.append("</div>")
    return "".join(out)


def _column_card(column: Mapping[str, Any]) -> str:
    verdict = _badge(bool(column.get("drift_detected")), column.get("note"))
    stats = (
        f"{_number(column.get('method'))} {_number(column.get('score'))} "
        f"(threshold {_number(column.get('threshold'))})"
    )
    note = f"<p class=meta>{escape(str(column['note']))}</p>" if column.get("note") else ""
    findings = "".join(
        f"<p class=meta>⚠ {escape(str(f.get('message', '')))}</p>"
        for f in column.get("quality", [])
    )
    return (
        f"<div class=card><h3>{escape(str(column['name']))} {verdict}</h3>"
        f"<p class=meta>{escape(str(column.get('kind')))} · {stats}</p>{note}"
        f"{_histogram_svg(column.get('histogram') or {})}{findings}</div>"
    )


def _histogram_svg(histogram: Mapping[str, Any]) -> str:
    ref, cur = list(histogram.get("reference", [])), list(histogram.get("current", []))
    if not ref or not cur:
        return ""
    if histogram.get("type") == "numeric":
        edges = histogram.get("edges", [])
        labels = ["<"] + [_number(e, 3) for e in edges[:-1]] + [">"]
    else:
        labels = [str(label) for label in histogram.get("labels", [])]
    width, height, pad = 320, 130, 18
    n = len(ref)
    step = (width - 2) / n
    top = max([*ref, *cur, 1e-9])
    out = [f"<svg width='100%' viewBox='0 0 {width} {height}' role=img>"]
    for i, (a, b) in enumerate(zip(ref, cur, strict=False)):
        x = 1 + i * step
        name = escape(labels[i] if i < len(labels) else "")
        for offset, value, colour in ((0.0, a, _REF), (step / 2, b, _CUR)):
            h = (height - pad - 4) * value / top
            out.append(
                f"<rect x='{x + offset:.1f}' y='{height - pad - h:.1f}' "
                f"width='{step / 2 - 0.5:.1f}' height='{h:.1f}' fill='{colour}'><title>{name}: "
                f"reference {a:.1%}, current {b:.1%}</title></rect>"
            )
    inner = labels[1:-1] if len(labels) > 2 else labels
    first, last = escape(inner[0]), escape(inner[-1])
    out.append(f"<text x='2' y='{height - 4}'>{first}</text>"
               f"<text x='{width - 2}' y='{height - 4}' text-anchor=end>{last}</text></svg>")
    return "".join(out)
