"""The transcript viewer (``simenv view``): every episode of a run in one static HTML page.

The page lists the episodes (outcome, task, run, reward, turns, seed), filterable by task,
outcome (success / failure / invalid), run and free text; opening one shows its messages, each
tool call with its arguments, each tool result with its provenance and latency, the reward with
its components and per-turn rewards, the evaluation, and the record's metadata.

The file is self-contained (inline CSS, JavaScript and data; nothing fetched), so it opens from
disk and can be attached to a run as an artifact. The page builds the DOM with ``textContent``,
never with HTML strings, so a transcript cannot inject markup. Deep links select a view:
``run.html#ep=3``, ``run.html#outcome=failure&task=billing-2``. Keys ``j`` / ``k`` move to the
next / previous episode in the list.

Per-turn token ids and logprobs (``metadata["turns"]``) are replaced by their counts, so a run
of a model policy gives a page of reasonable size.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from simenv.evaluation.metrics import episode_tokens, jsonable, outcome, split_runs
from simenv.types import Episode

__all__ = ["render_transcripts", "transcript_record"]

_STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,sans-serif;margin:0;color:#1d2330}
header{padding:10px 16px;background:#1d2330;color:#fff;display:flex;gap:10px;align-items:center;
flex-wrap:wrap}header b{font-size:15px;margin-right:8px}
header select,header input{font:inherit;padding:2px 4px}
main{display:flex;height:calc(100vh - 50px)}
#list{width:36%;min-width:280px;overflow:auto;border-right:1px solid #dde1e7;background:#fafbfc}
#detail{flex:1;overflow:auto;padding:10px 20px 40px}
.episode{padding:6px 12px;border-bottom:1px solid #eceef2;cursor:pointer}
.episode:hover{background:#eef2f8}.episode.open{background:#dde7f7}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;color:#fff}
.badge.success{background:#137333}.badge.failure{background:#b3261e}
.badge.invalid{background:#8a6d00}.badge.error{background:#b3261e}
.meta{color:#5b6473;font-size:12px}
.msg{border-left:4px solid #ccd;padding:4px 10px;margin:8px 0;background:#fff}
.msg .text{white-space:pre-wrap;word-break:break-word}
.msg.system{border-color:#999;background:#f5f5f5}.msg.user{border-color:#2e9e58}
.msg.assistant{border-color:#2d63c8}.msg.tool{border-color:#c8832d;background:#fdf8f1}
.msg.tool.failed{border-color:#b3261e;background:#fcf1f0}
.role{font-weight:600;margin-right:6px}
.tool-call{font-family:ui-monospace,monospace;font-size:12px;background:#eef2f8;margin:4px 0;
padding:4px 8px;border-radius:4px}.tool-call .name{color:#2d63c8;font-weight:600}
pre{margin:2px 0;white-space:pre-wrap;word-break:break-word;font-size:12px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 10px 2px 0;text-align:left;
border-bottom:1px solid #eceef2;font-size:13px}
h2{font-size:17px;margin:6px 0}h3{font-size:14px;margin:14px 0 4px}
#empty{padding:12px;color:#5b6473}.component th{padding-left:14px;font-weight:400}
"""

_SCRIPT = r"""
const E = JSON.parse(document.getElementById('data').textContent);
const $ = (id) => document.getElementById(id);
const list = $('list'), detail = $('detail');
const controls = {task: $('task'), outcome: $('outcome'), run: $('run'), q: $('q')};
let shown = [], current = -1;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
const num = (x, d = 3) => (typeof x === 'number' ? x.toFixed(d) : String(x));
const json = (x) => JSON.stringify(x, null, 2);
function pretty(text) {  // a JSON object or array, indented; anything else as it is
  if (!/^\s*[[{]/.test(text)) return text;
  try { return json(JSON.parse(text)); } catch (_) { return text; }
}

function options(select, values, counts) {
  for (const v of values) {
    select.append(el('option', {value: v}, counts ? `${v} (${counts[v] || 0})` : v));
  }
}
function setup() {
  const tally = (key) => E.reduce((a, e) => ((a[e[key]] = (a[e[key]] || 0) + 1), a), {});
  options(controls.task, [...new Set(E.map((e) => e.task_id))].sort(), tally('task_id'));
  options(controls.outcome, ['success', 'failure', 'invalid'], tally('outcome'));
  const runs = [...new Set(E.map((e) => e.run))];
  options(controls.run, runs, tally('run'));
  if (runs.length < 2) controls.run.hidden = true;
}
function matches(e) {
  const {task, outcome, run, q} = controls;
  if (task.value !== 'all' && e.task_id !== task.value) return false;
  if (outcome.value !== 'all' && e.outcome !== outcome.value) return false;
  if (run.value !== 'all' && e.run !== run.value) return false;
  const text = q.value.trim().toLowerCase();
  return !text || e.search.includes(text);
}
function draw() {
  list.replaceChildren();
  shown = E.filter(matches).sort((a, b) => a.order - b.order);
  for (const e of shown) {
    const row = el('div', {class: 'episode', 'data-index': e.index},
      el('span', {class: 'badge ' + e.outcome}, e.outcome), ' ', el('b', {}, e.task_id),
      el('div', {class: 'meta'}, `${e.run} · reward ${num(e.reward)} · ${e.steps.length} turns`
        + ` · seed ${e.seed}` + (e.sample === null ? '' : ` · sample ${e.sample}`)
        + ` · ${e.termination}`));
    if (e.index === current) row.classList.add('open');
    row.onclick = () => { show(e.index); remember(); };
    list.append(row);
  }
  if (!shown.length) list.append(el('div', {id: 'empty'}, 'No episode matches the filters.'));
  $('count').textContent = `${shown.length} of ${E.length} episodes`;
}
function remember() {
  const p = new URLSearchParams();
  for (const [k, c] of Object.entries(controls)) {
    if (c.value && c.value !== 'all') p.set(k, c.value);
  }
  if (current >= 0) p.set('ep', current);
  history.replaceState(null, '', '#' + p.toString());
}
function callBlock(call) {
  const box = el('div', {class: 'tool-call'}, '→ ', el('span', {class: 'name'}, call.name || '?'));
  box.append(el('pre', {class: 'arguments'}, json(call.arguments)));
  if (call.error) box.append(el('div', {class: 'badge error'}, 'unparsed: ' + call.error));
  return box;
}
function message(m, e, turn, results) {
  const failed = m.role === 'tool' && results[m.tool_call_id] && results[m.tool_call_id].is_error;
  const box = el('div', {class: `msg ${m.role}${failed ? ' failed' : ''}`},
    el('span', {class: 'role'}, m.role + (turn ? ` · turn ${turn}` : '')));
  if (m.role === 'tool') box.append(el('span', {class: 'meta'}, m.name || ''));
  if (m.content) box.append(el('div', {class: 'text'}, m.role === 'tool' ? pretty(m.content)
    : m.content));
  if (m.role === 'assistant') {
    const step = e.steps[turn - 1];
    const parsed = step ? step.tool_calls : [];
    for (const c of parsed) box.append(callBlock(c));
    if (!parsed.length) {
      for (const c of m.tool_calls || []) {
        box.append(callBlock({name: c.function.name, arguments: c.function.arguments}));
      }
    }
  }
  const r = results[m.tool_call_id];
  if (m.role === 'tool' && r) {
    box.classList.add('tool-result');
    box.append(el('div', {class: 'meta'},
      el('span', {class: 'provenance'}, r.provenance), ` · ${num(r.latency_s * 1000, 2)} ms`,
      r.is_error ? el('span', {class: 'badge error'}, 'error') : ''));
  }
  return box;
}
function show(i) {
  const e = E[i];
  if (!e) return;
  current = i;
  for (const row of list.children) row.classList.toggle('open', +row.dataset.index === i);
  const results = {};
  e.steps.forEach((s) => s.tool_results.forEach((r) => (results[r.tool_call_id] = r)));
  const parts = [el('h2', {id: 'title'}, e.task_id, ' ', el('span', {class: 'badge ' + e.outcome},
    e.outcome))];
  parts.push(el('div', {class: 'meta'}, `${e.scenario_id} · seed ${e.seed} · episode ` +
    `${e.episode_id} · ${e.run} · ended by ${e.termination}`));
  if (!e.valid) parts.push(el('p', {class: 'badge invalid'}, 'invalid: ' + (e.error || '')));
  const score = el('table', {id: 'scores'},
    el('tr', {}, el('th', {}, 'reward'), el('td', {}, num(e.reward))),
    el('tr', {}, el('th', {}, 'evaluation'), el('td', {}, e.evaluation === null ? '–' :
      num(e.evaluation))));
  for (const [k, v] of Object.entries(e.reward_components)) {
    score.append(el('tr', {class: 'component'}, el('th', {}, k), el('td', {}, num(v))));
  }
  score.append(el('tr', {}, el('th', {}, 'per-turn rewards'),
    el('td', {}, e.steps.map((s) => num(s.reward, 2)).join(', '))));
  if (e.tokens) {
    score.append(el('tr', {}, el('th', {}, 'tokens (prompt / completion)'),
      el('td', {}, `${e.tokens[0]} / ${e.tokens[1]}`)));
  }
  parts.push(score, el('h3', {}, 'Transcript'));
  let turn = 0;
  for (const m of e.messages) {
    if (m.role === 'assistant') turn += 1;
    parts.push(message(m, e, m.role === 'assistant' ? turn : 0, results));
  }
  parts.push(el('h3', {}, 'Policy and metadata'), el('pre', {}, json({policy: e.policy,
    metadata: e.metadata})));
  detail.replaceChildren(...parts);
  detail.scrollTop = 0;
}
function route() {
  const p = new URLSearchParams(location.hash.slice(1));
  for (const [k, c] of Object.entries(controls)) {
    const fallback = k === 'q' ? '' : 'all';
    c.value = p.get(k) || fallback;
    if (c.value === '') c.value = fallback;  // a select given a value it does not offer
  }
  draw();
  if (p.has('ep')) show(+p.get('ep'));
}
function move(delta) {
  if (!shown.length) return;
  const at = shown.findIndex((e) => e.index === current);
  const next = shown[Math.min(Math.max(at + delta, 0), shown.length - 1)];
  show(next.index); remember();
  const row = list.querySelector(`[data-index="${next.index}"]`);
  if (row) row.scrollIntoView({block: 'nearest'});
}
for (const c of Object.values(controls)) {
  // Selects report a choice with 'change'; the search box with 'input' (its 'change' comes on
  // blur, e.g. in the middle of a click on a row, and redrawing then would swallow the click).
  c[c.tagName === 'SELECT' ? 'onchange' : 'oninput'] = () => { draw(); remember(); };
}
document.onkeydown = (ev) => {
  if (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT') return;
  if (ev.key === 'j') move(1); else if (ev.key === 'k') move(-1);
};
window.onhashchange = route;
setup();
route();
"""


def transcript_record(episode: Episode, index: int, run: str) -> dict[str, Any]:
    """The JSON the page holds for one episode: the record, lightened for display.

    Args:
        episode: The episode.
        index: Its position in the file (the ``ep`` of a deep link).
        run: The run label shown in the list.

    Returns:
        The episode's fields, plus ``index``, ``run``, ``outcome``, ``tokens``, ``sample`` and
        ``search``
        (lower-cased text the free-text filter searches), with per-turn token ids and logprobs
        replaced by their counts.
    """
    record = episode.to_dict()
    job = episode.metadata.get("job")
    metadata = dict(record["metadata"])
    turns = metadata.get("turns")
    if isinstance(turns, list):
        metadata["turns"] = [
            {k: f"<{len(v)} values>" if isinstance(v, list) else v for k, v in t.items()}
            if isinstance(t, dict)
            else t
            for t in turns
        ]
    record.update(
        index=index,
        run=run,
        outcome=outcome(episode),
        tokens=episode_tokens(episode),
        metadata=metadata,
        sample=job.get("sample") if isinstance(job, dict) else None,
        search=" ".join(
            [episode.task_id, episode.episode_id, episode.termination, run, episode.error or ""]
        ).lower(),
    )
    return record


def render_transcripts(episodes: Sequence[Episode], title: str = "simenv episodes") -> str:
    """Render episodes as one self-contained, filterable HTML page.

    Args:
        episodes: The episodes, in the order they are listed (``#ep=i`` opens the i-th).
        title: Page title.

    Returns:
        The HTML document.
    """
    labels: dict[int, str] = {}
    for label, members in split_runs(episodes).items():
        for e in members:
            labels[id(e)] = label
    records = [transcript_record(e, i, labels[id(e)]) for i, e in enumerate(episodes)]
    runs = list(dict.fromkeys(labels.values()))
    ranked = sorted(
        records, key=lambda r: (runs.index(r["run"]), r["task_id"], r["seed"], r["sample"] or 0)
    )
    for position, record in enumerate(ranked):
        record["order"] = position  # the list shows runs, then tasks, then samples, in order
    data = json.dumps(jsonable(records), ensure_ascii=False, default=str)
    data = data.replace("<", "\\u003c")  # no "</script>" can close the data block
    esc = html.escape(title)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}'
        f"</style></head><body><header><b>{esc}</b>"
        '<select id="task" title="task"><option value="all">all tasks</option></select>'
        '<select id="outcome" title="outcome"><option value="all">all outcomes</option>'
        '</select><select id="run" title="run"><option value="all">all runs</option></select>'
        '<input id="q" type="search" placeholder="search task, episode id, run" size="26">'
        '<span id="count"></span></header><main><div id="list"></div><div id="detail">'
        '<p class="meta">Pick an episode on the left (keys j / k move through the list).</p>'
        '</div></main><script type="application/json" id="data">'
        f"{data}</script><script>{_SCRIPT}</script></body></html>\n"
    )
