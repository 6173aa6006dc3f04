"""The evaluation report (``simenv eval --html``): one self-contained HTML file.

It holds the headline numbers of each run with their intervals, the paired comparison with a
baseline when there is one, the plots (reward distribution, pass@k and pass^k curves, turns
histogram, success per task, termination reasons, tool use) and the per-task table. Plots are
inline SVG from :mod:`simenv.evaluation.charts`; there is no script and nothing is fetched, so
the file opens from disk in any browser and can be attached to a run as an artifact.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from simenv.evaluation import charts
from simenv.evaluation.metrics import Comparison, Summary
from simenv.types import Episode

__all__ = ["render_report"]

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{padding:14px 22px;background:#1d2330;color:#fff}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#c5cad3;font-size:12px}
main{padding:8px 22px 40px;max-width:1180px}
h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:#5b6473;font-size:12px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{padding:4px 10px;border-bottom:1px solid #eceef2;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#eef1f5}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
td.l,th.l{text-align:left}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 10px}
figcaption{font-weight:600;margin-bottom:4px}
.legend{font-size:12px;margin-bottom:2px}.key{margin-right:12px}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.note{color:#5b6473;font-size:12px}.up{color:#137333}.down{color:#b3261e}
details summary{cursor:pointer;margin:10px 0}
"""

_HEADLINE = ("episode/reward", "eval/success", "eval/pass@", "eval/pass^", "episode/turns")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}"


def _interval(metrics: Mapping[str, float], key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else ""


def render_report(
    summaries: Mapping[str, Summary],
    episodes: Mapping[str, Sequence[Episode]],
    *,
    title: str,
    comparisons: Mapping[str, Comparison] | None = None,
    baseline: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Render the report of one or more runs as one HTML page.

    Args:
        summaries: Run label -> its :class:`~simenv.evaluation.metrics.Summary` (the baseline
            included).
        episodes: Run label -> its episodes (for the distributions).
        title: Page title.
        comparisons: Run label -> its comparison with ``baseline``.
        baseline: Label of the baseline run in ``summaries``.
        notes: Lines shown under the title (source files, options).

    Returns:
        The HTML document.
    """
    labels = list(summaries)
    sections = [_cards(summaries), _metrics_table(summaries)]
    if comparisons and baseline is not None:
        sections.append(_comparisons(comparisons, baseline))
    sections.append(_plots(summaries, episodes))
    sections.append(_tools_and_termination(summaries))
    sections.append(_per_task(summaries))
    subtitle = " · ".join(
        [*notes, f"{sum(s.episodes for s in summaries.values())} episodes in {len(labels)} runs"]
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}'
        f'</title><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_STYLE}</style></head><body><header><h1>{_esc(title)}</h1><p>"
        f"{_esc(subtitle)}</p></header><main>{''.join(sections)}</main></body></html>\n"
    )


def _cards(summaries: Mapping[str, Summary]) -> str:
    out = []
    for label, s in summaries.items():
        m = s.metrics
        best_k = max((k for k in s.ks if f"eval/pass@{k}" in m), default=None)
        cards = [
            ("episodes", f"{s.episodes}", f"{s.valid} valid, {s.tasks} tasks, {s.groups} groups"),
            ("reward", _fmt(m.get("episode/reward")), _interval(m, "episode/reward")),
            ("success", _fmt(m.get("eval/success")), _interval(m, "eval/success")),
        ]
        if best_k is not None:
            cards.append(
                (
                    f"pass@{best_k} / pass^{best_k}",
                    f"{_fmt(m[f'eval/pass@{best_k}'])} / {_fmt(m[f'eval/pass^{best_k}'])}",
                    f"over {s.pass_groups[best_k]} groups",
                )
            )
        reliability = [k for k in s.ks if f"eval/pass^{k}" in m]
        if s.conversational and reliability:  # tau-bench's measure leads for conversations
            cards.insert(
                1,
                (
                    "pass^k (all k trials succeed)",
                    " / ".join(_fmt(m[f"eval/pass^{k}"]) for k in reliability),
                    "k = " + ", ".join(map(str, reliability)),
                ),
            )
        if "users/turn_success" in m:
            cards.append(("user turns", _fmt(m["users/turn_success"]), "share solved"))
        cards.append(("invalid", _fmt(m.get("episode/invalid_rate")), "share of episodes"))
        body = "".join(
            f'<div class="card"><span>{_esc(name)}</span><b>{_esc(value)}</b>'
            f"<span>{_esc(detail)}</span></div>"
            for name, value, detail in cards
        )
        out.append(f'<h2>{_esc(label)}</h2><div class="cards">{body}</div>')
    return "".join(out)


def _metrics_table(summaries: Mapping[str, Summary]) -> str:
    keys: list[str] = []
    for s in summaries.values():
        keys.extend(
            k
            for k in s.metrics
            if k not in keys
            and not k.endswith(("_low", "_high"))
            and not (k.startswith("tools/") and k.count("/") > 1)  # in the tools table
        )
    head = "".join(f"<th>{_esc(label)}</th>" for label in summaries)
    rows = []
    for key in keys:
        cells = "".join(
            f"<td>{_fmt(s.metrics.get(key))} {_esc(_interval(s.metrics, key))}</td>"
            for s in summaries.values()
        )
        rows.append(f"<tr><td>{_esc(key)}</td>{cells}</tr>")
    return (
        "<h2>Metrics</h2><table><thead><tr><th>metric</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Means over valid episodes; [low, high] is the 95% bootstrap interval '
        "(groups resampled). pass@k and pass^k average the groups with at least k valid "
        "samples.</p>"
    )


def _comparisons(comparisons: Mapping[str, Comparison], baseline: str) -> str:
    rows = []
    charts_out = []
    for label, c in comparisons.items():
        for metric, d in c.differences.items():
            sign = "up" if d.ci_low > 0 else "down" if d.ci_high < 0 else ""
            rows.append(
                f'<tr><td>{_esc(label)}</td><td class="l">{_esc(metric)}</td><td>{_fmt(d.run)}</td>'
                f'<td>{_fmt(d.baseline)}</td><td class="{sign}">{d.difference:+.3f}</td>'
                f"<td>[{d.ci_low:+.3f}, {d.ci_high:+.3f}]</td><td>{d.wins} / {d.losses} / "
                f"{d.ties}</td><td>{c.tasks}</td></tr>"
            )
        tasks = sorted(c.per_task, key=lambda t: c.per_task[t]["episode/reward"])
        if tasks:
            deltas = {label: [c.per_task[t]["episode/reward"] for t in tasks]}
            charts_out.append(
                f"<figure><figcaption>Reward difference per task: {_esc(label)} − "
                f"{_esc(baseline)}</figcaption>"
                + charts.task_bars(
                    tasks,
                    deltas,
                    label="reward difference per task",
                    x_label="run − baseline",
                    low=-1.0,
                    high=1.0,
                )
                + "</figure>"
            )
    skipped = [
        f"{label}: left out {len(c.only_run)} tasks only in the run and "
        f"{len(c.only_baseline)} only in the baseline"
        for label, c in comparisons.items()
        if c.only_run or c.only_baseline
    ]
    note = "".join(f'<p class="note">{_esc(line)}</p>' for line in skipped)
    return (
        f"<h2>Paired comparison with {_esc(baseline)}</h2><table><thead><tr><th>run</th>"
        '<th class="l">metric</th><th>run mean</th><th>baseline mean</th><th>difference</th>'
        "<th>95% interval</th>"
        f"<th>wins / losses / ties</th><th>tasks</th></tr></thead><tbody>{''.join(rows)}"
        '</tbody></table><p class="note">Per-task means paired on the tasks both runs hold; '
        "the interval resamples tasks. An interval that excludes 0 is coloured.</p>"
        f'{note}<div class="grid">{"".join(charts_out)}</div>'
    )


def _plots(summaries: Mapping[str, Summary], episodes: Mapping[str, Sequence[Episode]]) -> str:
    valid = {label: [e for e in episodes.get(label, ()) if e.valid] for label in summaries}
    figures = [
        (
            "Reward distribution",
            charts.histogram(
                {label: [e.reward for e in es] for label, es in valid.items()},
                label="reward distribution",
                x_label="episode reward",
            ),
        ),
    ]
    ks = sorted({k for s in summaries.values() for k in s.ks if f"eval/pass@{k}" in s.metrics})
    if ks:
        curves: dict[str, list[float | None]] = {}
        colours: dict[str, int] = {}
        for i, (label, s) in enumerate(summaries.items()):
            curves[f"{label} pass@k"] = [s.metrics.get(f"eval/pass@{k}") for k in ks]
            curves[f"{label} pass^k"] = [s.metrics.get(f"eval/pass^{k}") for k in ks]
            colours[f"{label} pass@k"] = colours[f"{label} pass^k"] = i
        dashed = [name for name in curves if name.endswith("pass^k")]
        figures.append(
            (
                "pass@k (solid) and pass^k (dashed)",
                charts.line_chart(
                    ks,
                    curves,
                    label="pass@k curve",
                    x_label="k",
                    y_label="probability",
                    colours=colours,
                    dashed=dashed,
                ),
            )
        )
    figures.append(
        (
            "Turns per episode",
            charts.histogram(
                {label: [float(e.turns) for e in es] for label, es in valid.items()},
                label="turns histogram",
                x_label="turns",
                integer=True,
            ),
        )
    )
    tasks = sorted({t for s in summaries.values() for t in s.per_task})
    success = {
        label: [s.per_task.get(t, {}).get("eval/success", 0.0) for t in tasks]
        for label, s in summaries.items()
    }
    figures.append(
        (
            "Success per task",
            charts.task_bars(tasks, success, label="success per task", x_label="success rate"),
        )
    )
    body = "".join(
        f"<figure><figcaption>{_esc(caption)}</figcaption>{svg}</figure>"
        for caption, svg in figures
    )
    return f'<h2>Plots</h2><div class="grid">{body}</div>'


def _tools_and_termination(summaries: Mapping[str, Summary]) -> str:
    reasons = sorted({r for s in summaries.values() for r in s.termination})
    tools = sorted({t for s in summaries.values() for t in s.tools})
    figures = []
    if reasons:
        shares = {
            label: [s.termination.get(r, 0) / max(s.episodes, 1) for r in reasons]
            for label, s in summaries.items()
        }
        figures.append(
            "<figure><figcaption>Termination reasons</figcaption>"
            + charts.bar_chart(
                reasons, shares, label="termination reasons", y_label="share of episodes"
            )
            + "</figure>"
        )
    if tools:
        per_episode = {
            label: [s.tools.get(t, {}).get("calls_per_episode", 0.0) for t in tools]
            for label, s in summaries.items()
        }
        figures.append(
            "<figure><figcaption>Tool calls per episode</figcaption>"
            + charts.bar_chart(tools, per_episode, label="tool calls", y_label="calls / episode")
            + "</figure>"
        )
    rows = "".join(
        f'<tr><td>{_esc(label)}</td><td class="l">{_esc(name)}</td><td>{t["calls"]:.0f}</td>'
        f"<td>{t['calls_per_episode']:.3f}</td><td>{t['errors']:.0f}</td>"
        f"<td>{t['error_rate']:.3f}</td><td>{t['latency_s'] * 1000:.2f}</td></tr>"
        for label, s in summaries.items()
        for name, t in s.tools.items()
    )
    table = (
        '<table><thead><tr><th>run</th><th class="l">tool</th><th>calls</th>'
        "<th>per episode</th>"
        f"<th>errors</th><th>error rate</th><th>mean latency (ms)</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
        if rows
        else '<p class="note">No tool calls.</p>'
    )
    return f'<h2>Tools and termination</h2><div class="grid">{"".join(figures)}</div>{table}'


def _per_task(summaries: Mapping[str, Summary]) -> str:
    columns = ("episode/count", "episode/reward", "eval/success", "episode/turns")
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    rows = "".join(
        f"<tr><td>{_esc(task)}</td><td>{_esc(label)}</td>"
        + "".join(f"<td>{_fmt(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for label, s in summaries.items()
        for task, row in s.per_task.items()
    )
    count = len({t for s in summaries.values() for t in s.per_task})
    return (
        f"<details><summary><b>Per task</b> ({count} tasks)</summary><table><thead><tr>"
        f"<th>task</th><th>run</th>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )
