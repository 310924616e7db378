"""The status page: HTML and an inline SVG plot, rendered from a snapshot (pure functions).

The page is one ``<div id="status">`` fragment inside a shell that loads ``/style.css`` and
``/app.js``; the script asks ``/fragment?since=VERSION&wait=REFRESH`` (held by the server until
something changes or ``REFRESH`` seconds pass) and swaps the fragment in, so the page follows the
federation without reloading. Without JavaScript, ``<noscript>`` falls back to a meta refresh.
Every value from the federation (client ids come from certificates) is HTML-escaped; the page is
served with a Content-Security-Policy that allows only its own script and style.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: plotted metrics and their colours (colour-blind-safe Okabe-Ito)
SERIES = (("uf1", "UF1", "#0072B2"), ("uar", "UAR", "#E69F00"), ("accuracy", "accuracy", "#009E73"))
EPS_COLOUR = "#CC79A7"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .4em}
.sub{color:#666}.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;background:#555}
.badge.train,.badge.aggregate,.badge.stats,.badge.stats_agg,.badge.setup,.badge.evaluate{background:#0072B2}
.badge.done{background:#009E73}.badge.aborted{background:#D55E00}.badge.joining{background:#E69F00}
.banner{padding:.5em .8em;margin:.6em 0;border-radius:.3em;background:#fff3cd;border:1px solid #e0c36b}
.offline{display:none}body[data-offline] .offline{display:block}
table{border-collapse:collapse;background:#fff}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}
.dead{color:#D55E00}.alive{color:#009E73}
meter{width:7em;vertical-align:middle}
.kv{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}
svg{background:#fff;border:1px solid #ddd;margin-right:1em}
"""

SCRIPT = """(function () {
  "use strict";
  var root = document.getElementById("status");
  function later(ms) { return new Promise(function (ok) { setTimeout(ok, ms); }); }
  async function poll() {
    for (;;) {
      try {
        var url = "fragment?since=" + encodeURIComponent(root.dataset.version) + "&wait=" + root.dataset.refresh;
        var r = await fetch(url, {cache: "no-store", credentials: "same-origin"});
        if (!r.ok) throw new Error("HTTP " + r.status);
        var t = document.createElement("template");
        t.innerHTML = (await r.text()).trim();
        var fresh = t.content.firstElementChild;
        if (fresh && fresh.id === "status") {
          root.replaceWith(fresh);
          root = fresh;
          document.body.dataset.updates = String((Number(document.body.dataset.updates) || 0) + 1);
        }
        delete document.body.dataset.offline;
        await later(250);
      } catch (e) {
        document.body.dataset.offline = "1";
        await later(3000);
      }
    }
  }
  poll();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, spec: str = ".3f") -> str:
    return (
        "-"
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
        else format(value, spec)
    )


def _ago(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds:.1f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _mb(nbytes: Any) -> str:
    return _num((nbytes or 0) / 1e6, ".2f")


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a if hi <= lo else a + (v - lo) / (hi - lo) * (b - a)


def svg_plot(
    rows: Sequence[Mapping[str, Any]],
    rounds: int,
    series=SERIES,
    *,
    y_max: float | None = 1.0,
    title: str = "pooled evaluation",
    width: int = 520,
    height: int = 220,
    budget: float | None = None,
) -> str:
    """An SVG line plot of ``series`` (key, label, colour) over the rounds in ``rows``.

    x runs over rounds 1..``rounds`` (so the axis stays put while the run grows); y over 0..``y_max``
    (None: the data's maximum, or ``budget`` if larger, drawn as a dashed line).
    """
    left, right, top, bottom = 44, 12, 24, 30
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    values = [float(r[k]) for r in rows for k, _, _ in series if isinstance(r.get(k), (int, float))]
    hi = y_max if y_max is not None else max([*values, budget or 0.0, 1e-9]) * 1.1
    xs_hi = max(rounds, max((int(r["round"]) for r in rows if isinstance(r.get("round"), int)), default=1), 2)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<text x="{x0}" y="15" font-size="13" fill="#222">{_e(title)}</text>',
    ]
    for i in range(5):  # horizontal grid and y labels
        v = hi * i / 4
        y = _scale(v, 0, hi, y0, y1)
        out.append(
            f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#666">{v:.2g}</text>'
        )
    step = max(1, math.ceil(xs_hi / 8))
    ticks = sorted({1, xs_hi, *(t for t in range(1, xs_hi + 1, step) if xs_hi - t >= step / 2)})
    for t in ticks:
        x = _scale(t, 1, xs_hi, x0, x1)
        out.append(f'<text x="{x:.1f}" y="{y0 + 16}" font-size="11" text-anchor="middle" fill="#666">{t}</text>')
    out.append(f'<text x="{x1}" y="{height - 2}" font-size="11" text-anchor="end" fill="#666">round</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/>')
    if budget:
        y = _scale(budget, 0, hi, y0, y1)
        out.append(
            f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{EPS_COLOUR}" stroke-dasharray="5,4"/>'
            f'<text x="{x1}" y="{y - 4:.1f}" font-size="11" text-anchor="end" fill="{EPS_COLOUR}">'
            f"budget {budget:g}</text>"
        )
    legend_x = x0 + 7 * len(title) + 16
    for key, label, colour in series:
        pts = [
            (int(r["round"]), float(r[key]))
            for r in rows
            if isinstance(r.get(key), (int, float)) and isinstance(r.get("round"), int)
        ]
        out.append(f'<g class="series" data-key="{_e(key)}" data-points="{len(pts)}">')
        xy = [(_scale(x, 1, xs_hi, x0, x1), _scale(y, 0, hi, y0, y1)) for x, y in pts]
        if len(xy) > 1:
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in xy)}"/>'
            )
        for (a, b), (rnd, v) in zip(xy, pts, strict=True):
            out.append(
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"><title>round {rnd}: {_e(label)} '
                f"{v:.4f}</title></circle>"
            )
        out.append("</g>")
        out.append(
            f'<rect x="{legend_x}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="17" font-size="12" fill="#222">{_e(label)}</text>'
        )
        legend_x += 24 + 8 * len(label)
    if not values:
        out.append(
            f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" font-size="13" text-anchor="middle" fill="#999">'
            f"no round evaluated yet</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _clients_table(snap: Mapping[str, Any]) -> str:
    rows = [
        '<table id="clients"><tr><th>client</th><th>state</th><th>last seen</th><th>this stage</th>'
        "<th>epsilon spent / budget</th><th>delta</th><th>accountant</th></tr>"
    ]
    for c in snap.get("clients", ()):
        eps, budget = c.get("epsilon"), c.get("target_epsilon")
        if not c.get("dp"):
            privacy = "no DP report yet" if eps is None else "DP off"
        else:
            meter = (
                f'<meter min="0" max="{budget:g}" high="{0.8 * budget:g}" value="{min(eps, budget):g}"></meter> '
                if isinstance(eps, (int, float)) and budget
                else ""
            )
            privacy = f"{meter}{_num(eps, '.3f')} / {_num(budget, 'g') if budget else 'no budget'}"
        state = "alive" if c.get("alive") else "dead"
        part = c.get("part", "")
        if c.get("excluded"):
            part = f"excluded: {c['excluded']}"
        rows.append(
            f'<tr data-client="{_e(c["id"])}"><td>{_e(c["id"])}</td><td class="{state}">{state}</td>'
            f"<td>{_ago(c.get('last_seen_s'))}</td><td>{_e(part)}</td><td>{privacy}</td>"
            f"<td>{_num(c.get('delta'), '.1e')}</td><td>{_e(c.get('accountant') or '-')}</td></tr>"
        )
    if not snap.get("clients"):
        rows.append('<tr><td colspan="7">no client has joined yet</td></tr>')
    rows.append("</table>")
    return "".join(rows)


def _rounds_table(snap: Mapping[str, Any]) -> str:
    rows = [
        '<table id="rounds"><tr><th>round</th><th>attempt</th><th>clients</th><th>UF1</th><th>UAR</th>'
        "<th>accuracy</th><th>eps max</th><th>seconds</th><th>MB up</th><th>MB down</th></tr>"
    ]
    for r in reversed(snap.get("history", ())):
        rows.append(
            f'<tr data-round="{_e(r.get("round"))}"><td>{_e(r.get("round"))}</td><td>{_e(r.get("attempt", 0))}</td>'
            f"<td>{_e(r.get('contributors', 0))}</td><td>{_num(r.get('uf1'))}</td><td>{_num(r.get('uar'))}</td>"
            f"<td>{_num(r.get('accuracy'))}</td><td>{_num(r.get('epsilon_max'), '.2f')}</td>"
            f"<td>{_num(r.get('seconds'), '.2f')}</td><td>{_mb(r.get('bytes_up'))}</td>"
            f"<td>{_mb(r.get('bytes_down'))}</td></tr>"
        )
    if not snap.get("history"):
        rows.append('<tr><td colspan="10">no round completed yet</td></tr>')
    rows.append("</table>")
    return "".join(rows)


def render_fragment(snap: Mapping[str, Any], refresh: float = 5.0) -> str:
    """The ``<div id="status">`` the page shows and the script swaps in."""
    phase = str(snap.get("phase", "?"))
    stage = snap.get("stage")
    where = f"stage {_e(stage)}, attempt {_e(snap.get('attempt', 0))}" if stage else f"phase {_e(phase)}"
    deadline = snap.get("stage_deadline_s")
    rows = snap.get("history", ())
    budgets = [c["target_epsilon"] for c in snap.get("clients", ()) if c.get("target_epsilon")]
    stamp = time.strftime("%H:%M:%S", time.localtime(snap["updated"])) if snap.get("updated") else "-"
    banners = []
    if snap.get("stop_requested"):
        banners.append(
            f'<div class="banner" id="stop">stop requested: {_e(snap["stop_requested"])}; the federation '
            f"ends after the current round</div>"
        )
    if snap.get("outcome"):
        banners.append(f'<div class="banner" id="outcome">{_e(phase)}: {_e(snap["outcome"])}</div>')
    return "".join(
        [
            f'<div id="status" data-version="{_e(snap.get("version", 0))}" data-refresh="{refresh:g}" '
            f'data-round="{_e(snap.get("round", 0))}" data-phase="{_e(phase)}">',
            f'<h1>federation {_e(snap.get("federation", "?"))} <span class="badge {_e(phase)}">{_e(phase)}</span></h1>',
            f'<div class="sub">run {_e(snap.get("run_id", "?"))} · coordinator pid {_e(snap.get("pid", "?"))} · '
            f"updated {_e(stamp)}</div>",
            *banners,
            '<h2>now</h2><div class="kv">',
            f'<span>round</span><span id="round">{_e(snap.get("round", 0))} of {_e(snap.get("rounds", "?"))} '
            f"({_e(snap.get('completed', 0))} completed)</span>",
            f'<span>where</span><span id="stage">{where}'
            + (f", deadline in {deadline:.0f} s" if isinstance(deadline, (int, float)) else "")
            + "</span>",
            f"<span>this round</span><span>{_num(snap.get('round_seconds'), '.1f')} s, "
            f"{_mb(snap.get('round_bytes_up'))} MB up, {_mb(snap.get('round_bytes_down'))} MB down</span>",
            f'<span>mode</span><span id="mode">{_e(snap.get("aggregation", "?"))}'
            + (" (NOT private: the coordinator sees every update)" if snap.get("aggregation") == "plain" else "")
            + f", strategy {_e(snap.get('strategy', '?'))}</span>",
            f"<span>workload</span><span>{_e(snap.get('workload', '?'))}</span>",
            f"<span>total</span><span>{_mb(snap.get('bytes_up'))} MB up, {_mb(snap.get('bytes_down'))} MB down</span>",
            "</div>",
            f"<h2>clients ({sum(1 for c in snap.get('clients', ()) if c.get('alive'))} alive of "
            f"{len(snap.get('clients', ()))} joined, {_e(snap.get('min_clients', '?'))} needed)</h2>",
            _clients_table(snap),
            "<h2>rounds</h2><div>",
            svg_plot(rows, int(snap.get("rounds") or 1)),
            svg_plot(
                rows,
                int(snap.get("rounds") or 1),
                (("epsilon_max", "max epsilon", EPS_COLOUR),),
                y_max=None,
                title="privacy spent (largest client epsilon)",
                width=420,
                budget=max(budgets) if budgets else None,
            ),
            "</div>",
            _rounds_table(snap),
            "</div>",
        ]
    )


def render_page(snap: Mapping[str, Any], refresh: float = 5.0) -> str:
    """The whole page (``/``)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(snap.get('federation', 'federation'))}: round {_e(snap.get('round', 0))} "
        f"({_e(snap.get('phase', '?'))})</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="style.css">'
        f'<noscript><meta http-equiv="refresh" content="{max(1, round(refresh))}"></noscript>'
        '<script src="app.js" defer></script></head><body>'
        '<div class="banner offline">the coordinator does not answer: showing its last known state</div>'
        f"{render_fragment(snap, refresh)}</body></html>"
    )
