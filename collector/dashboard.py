"""The public insights page: server-rendered HTML with inline SVG charts.

:func:`render` is a pure function of the document :func:`collector.insights.collect`
returns. No script, no external stylesheet, font or CDN: the page works offline
and behind any content security policy. Every piece of text that came from a
heartbeat (names, versions) is HTML-escaped, and there are no instance ids to show.
Names and versions are those the document lists (k-anonymous); the rest is one
"other" line, so the tables add up to the totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any, Final

from collector.insights import KIND_LABELS, OTHER
from outbox.contract import KINDS

COLORS: Final = {"api": "#2563eb", "command": "#16a34a", "ui": "#d97706"}
WINDOWS: Final = (7, 30, 90, 365)

_CSS = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); background: #f8fafc; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.1rem; margin: 0 0 12px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
nav a { display: inline-block; padding: 2px 10px; margin-right: 4px; border-radius: 999px;
        border: 1px solid var(--line); color: var(--ink); text-decoration: none; background: #fff; }
nav a[aria-current] { background: var(--ink); color: #fff; border-color: var(--ink); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
         margin: 20px 0; }
.card, section.panel { background: #fff; border: 1px solid var(--line); border-radius: 10px;
                       padding: 14px 16px; }
.card .label { color: var(--muted); font-size: .85rem; }
.card .value { font-size: 1.7rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px;
        margin-top: 12px; }
section.panel { margin-top: 12px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; font-size: .85rem; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .88rem;
          overflow-wrap: break-word; }
td.bar { width: 22%; }
span.share { color: var(--muted); font-size: .8rem; display: inline-block; min-width: 3.4em; }
tr.other td { color: var(--muted); font-style: italic; }
p.note { color: var(--muted); font-size: .9rem; margin: 12px 2px 0; }
td.bar svg { display: block; }
.legend span { display: inline-flex; align-items: center; margin-right: 14px; font-size: .9rem; }
.legend i { width: 12px; height: 12px; border-radius: 3px; display: inline-block;
           margin-right: 5px; }
.empty { color: var(--muted); }
footer { color: var(--muted); font-size: .85rem; margin-top: 24px; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: var(--muted); }
"""


def fmt(n: int) -> str:
    """Thousands separated: 12,345."""
    return f"{n:,}"


def _bar(value: int, largest: int, color: str) -> str:
    """A horizontal bar as wide as the cell at ``largest``."""
    w = 0.0 if largest <= 0 or value <= 0 else max(1.0, 100 * value / largest)
    return (
        '<svg width="100%" height="12" viewBox="0 0 100 12" preserveAspectRatio="none" '
        f'role="img" aria-label="{fmt(value)}">'
        f'<rect x="0" y="1" width="{w:.1f}" height="10" fill="{color}"/></svg>'
    )


def _name(name: str) -> str:
    """An escaped name that may wrap after its dots (never inside a segment)."""
    return "<wbr>.".join(escape(part) for part in name.split("."))


def daily_chart(daily: list[Mapping[str, Any]], *, width: int = 1000, height: int = 220) -> str:
    """Stacked bars per UTC day, one colour per kind, a tooltip per bar."""
    left, bottom, top = 56, 22, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(int(d[k]) for k in KINDS) for d in daily]
    largest = max(totals, default=0)
    step = plot_w / max(len(daily), 1)
    bar_w = max(step * 0.8, 1.0)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="Daily usage, stacked by kind" data-testid="daily-chart">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'stroke="#9ca3af"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{fmt(largest)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for idx, (d, total) in enumerate(zip(daily, totals, strict=True)):
        x = left + idx * step + (step - bar_w) / 2
        y = float(top + plot_h)
        tip = f"{d['day']}: " + ", ".join(f"{KIND_LABELS[k]} {fmt(int(d[k]))}" for k in KINDS)
        parts.append(f"<g><title>{escape(tip)}</title>")
        for k in KINDS:
            h = 0.0 if largest == 0 else plot_h * int(d[k]) / largest
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{COLORS[k]}"/>'
                )
        if total == 0:  # keep a hover target for empty days
            parts.append(
                f'<rect x="{x:.1f}" y="{top}" width="{bar_w:.1f}" height="{plot_h}" '
                'fill="transparent"/>'
            )
        parts.append("</g>")
    if daily:
        first, last = daily[0]["day"], daily[-1]["day"]
        parts.append(f'<text x="{left}" y="{height - 6}">{escape(first)}</text>')
        parts.append(
            f'<text x="{width - 8}" y="{height - 6}" text-anchor="end">{escape(last)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def percent(fraction: float) -> str:
    """0.8 → "80 %", 0.0625 → "6.3 %"."""
    value = fraction * 100
    return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"


def _top_table(kind: str, rows: list[Mapping[str, Any]], other: int, k: int) -> str:
    if not rows and not other:
        return '<p class="empty">Nothing recorded in this window.</p>'
    largest = max([int(r["count"]) for r in rows] + [other])
    body = "".join(
        f'<tr data-testid="top-{kind}-row"><td class="name">{_name(str(r["name"]))}</td>'
        f'<td class="bar">{_bar(int(r["count"]), largest, COLORS[kind])}</td>'
        f'<td class="num" data-testid="top-{kind}-count">{fmt(int(r["count"]))}</td>'
        f'<td class="num"><span data-testid="top-{kind}-instances">{fmt(int(r["instances"]))}'
        f'</span> <span class="share" data-testid="top-{kind}-share">'
        f"{percent(float(r['share']))}</span></td></tr>"
        for r in rows
    )
    if other:
        body += (
            f'<tr class="other" data-testid="other-{kind}-row"><td class="name" '
            f'title="names used by fewer than {k} instances, and names past the list">'
            f'{OTHER}</td><td class="bar">{_bar(other, largest, COLORS[kind])}</td>'
            f'<td class="num" data-testid="other-{kind}-count">{fmt(other)}</td>'
            "<td></td></tr>"
        )
    return (
        '<table><thead><tr><th>name</th><th></th><th class="num">count</th>'
        '<th class="num">instances</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _breakdown(rows: Iterable[Mapping[str, Any]], key: str, testid: str) -> str:
    items = list(rows)
    if not items:
        return '<p class="empty">No instance in this window.</p>'
    largest = max(int(r["instances"]) for r in items)
    body = "".join(
        f'<tr data-testid="{testid}-row"{" class=other" if r[key] == OTHER else ""}>'
        f'<td class="name">{escape(str(r[key]))}</td>'
        f'<td class="bar">{_bar(int(r["instances"]), largest, "#6366f1")}</td>'
        f'<td class="num">{fmt(int(r["instances"]))}</td></tr>'
        for r in items
    )
    return (
        f'<table><thead><tr><th>{escape(key)}</th><th></th><th class="num">instances</th></tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


def _card(label: str, value: int, testid: str) -> str:
    return (
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value" data-testid="{testid}">{fmt(value)}</div></div>'
    )


def render(doc: Mapping[str, Any]) -> str:
    """The whole page for one insights document."""
    days = int(doc["days"])
    inst, totals = doc["instances"], doc["totals"]
    nav = "".join(
        f'<a href="?days={n}"{" aria-current=page" if n == days else ""}>{n} days</a>'
        for n in WINDOWS
    )
    cards = "".join(
        [
            _card("Active instances, 7 days", int(inst["active_7d"]), "active-7d"),
            _card("Active instances, 30 days", int(inst["active_30d"]), "active-30d"),
            _card("Heartbeats received", int(doc["heartbeats"]["received"]), "heartbeats"),
            *(_card(KIND_LABELS[k], int(totals[k]), f"total-{k}") for k in KINDS),
        ]
    )
    legend = "".join(
        f'<span><i style="background:{COLORS[k]}"></i>{KIND_LABELS[k]}</span>' for k in KINDS
    )
    k_min = int(doc["min_instances"])
    tops = "".join(
        f'<section class="panel"><h2>Top {KIND_LABELS[k]}</h2>'
        f"{_top_table(k, doc['top'][k], int(doc['other'][k]), k_min)}</section>"
        for k in KINDS
    )
    dropped = doc.get("dropped") or {}
    dropped_html = (
        "<table><tbody>"
        + "".join(
            f'<tr><td class="name">{escape(str(reason))}</td>'
            f'<td class="num" data-testid="dropped-{escape(str(reason))}">{fmt(int(n))}</td></tr>'
            for reason, n in dropped.items()
        )
        + "</tbody></table>"
        if dropped
        else '<p class="empty">Nothing was dropped.</p>'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Helios usage insights</title><style>{_CSS}</style></head>
<body><main>
<h1>Helios usage insights</h1>
<p class="lead">Anonymous usage counts from the Helios instances whose operators opted in.
The last <strong data-testid="window-days">{days}</strong> UTC days,
{escape(str(doc["from"]))} to {escape(str(doc["to"]))}.</p>
<nav aria-label="window">{nav}</nav>
<div class="cards">{cards}</div>
<section class="panel"><h2>Daily usage</h2><div class="legend">{legend}</div>
{daily_chart(doc["daily"])}</section>
<div class="grid">{tops}</div>
<p class="note" data-testid="k-anonymity">A name or version is shown once at least
{k_min} instances reported it in this window; the others are summed as
&ldquo;{OTHER}&rdquo;, so every table adds up to the totals. &ldquo;instances&rdquo; is
how many instances used a name, with their share of the
{fmt(int(inst["in_window"]))} instances active in the window.</p>
<div class="grid">
<section class="panel"><h2>Editions</h2>
{_breakdown(inst["by_edition"], "edition", "edition")}</section>
<section class="panel"><h2>Versions</h2>
{_breakdown(inst["by_version"], "version", "version")}</section>
<section class="panel"><h2>Not recorded by the instances</h2>{dropped_html}
<p class="empty">Heartbeats missing in sequence: {fmt(int(doc["heartbeats"]["missing"]))}</p>
</section>
</div>
<footer>Counts only: which API calls, commands and UI actions are used, per UTC day.
No user, e-mail, hostname, IP address or instance id is collected or shown.
Generated {escape(str(doc["generated_at"]))}.
The same numbers as JSON: <a href="/api/insights?days={days}">/api/insights?days={days}</a>.
</footer>
</main></body></html>
"""
