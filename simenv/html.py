"""Static HTML for people: the transcript viewer (``simenv view``) and the evaluation report.

Both are single self-contained files (inline CSS, JavaScript and SVG; no network), so they open
from disk in any browser and can be attached to a run as artifacts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from simenv.types import Episode

__all__ = ["render_report", "render_transcripts"]

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330}
header{padding:12px 18px;background:#1d2330;color:#fff}
main{display:flex;height:calc(100vh - 52px)}
#list{width:34%;overflow:auto;border-right:1px solid #ddd}
#detail{flex:1;overflow:auto;padding:12px 18px}
.row{padding:6px 12px;border-bottom:1px solid #eee;cursor:pointer}
.row:hover{background:#f3f5f9}.ok{color:#137333}.bad{color:#b3261e}.void{color:#8a6d00}
.msg{border-left:3px solid #ccd;padding:4px 10px;margin:8px 0;white-space:pre-wrap}
.msg.system{border-color:#999}.msg.user{border-color:#3b6}.msg.assistant{border-color:#36c}
.msg.tool{border-color:#c83;background:#fbf7f2}.call{font-family:monospace;color:#36c}
.meta{color:#666;font-size:12px}table{border-collapse:collapse}td,th{padding:3px 8px;
border-bottom:1px solid #eee;text-align:left}
"""

_SCRIPT = """
const E = JSON.parse(document.getElementById('data').textContent);
const list = document.getElementById('list'), detail = document.getElementById('detail');
const q = document.getElementById('q'), outcome = document.getElementById('outcome');
function esc(s){return String(s).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));}
function kind(e){return !e.valid?'invalid':(e.evaluation>=1?'success':'failure');}
function draw(){
  list.innerHTML='';
  E.forEach((e,i)=>{
    if(q.value && !e.task_id.includes(q.value)) return;
    if(outcome.value!=='all' && kind(e)!==outcome.value) return;
    const d=document.createElement('div'); d.className='row episode'; d.dataset.index=i;
    const k=kind(e), cls={success:'ok',failure:'bad',invalid:'void'}[k];
    d.innerHTML=`<b>${esc(e.task_id)}</b> <span class="${cls}">${k}</span>
      <span class="meta">reward ${e.reward.toFixed(3)} · ${e.steps.length} turns ·
      seed ${e.seed} · ${esc(e.policy.name||'')}</span>`;
    d.onclick=()=>{open(i); history.replaceState(null,'','#ep='+i);};
    list.appendChild(d);
  });
  document.getElementById('count').textContent=list.children.length+' episodes';
}
function open(i){
  const e=E[i]; if(!e) return;
  let h=`<h2 id="title">${esc(e.task_id)} <span class="meta">${esc(e.scenario_id)} · seed
    ${e.seed} · ${esc(e.termination)}</span></h2><p>reward <b>${e.reward}</b>
    ${esc(JSON.stringify(e.reward_components))} · evaluation <b>${e.evaluation}</b>
    ${e.valid?'':'· <span class="void">invalid: '+esc(e.error)+'</span>'}</p>`;
  const results={};
  e.steps.forEach(s=>s.tool_results.forEach(r=>results[r.tool_call_id]=r));
  e.messages.forEach(m=>{
    h+=`<div class="msg ${esc(m.role)}"><b>${esc(m.role)}</b> ${esc(m.content||'')}`;
    (m.tool_calls||[]).forEach(c=>{h+=`<div class="call">→ ${esc(c.function.name)}(${esc(c.function.arguments)})</div>`;});
    if(m.role==='tool' && results[m.tool_call_id]){const r=results[m.tool_call_id];
      h+=`<div class="meta">${r.provenance} · ${(r.latency_s*1000).toFixed(2)} ms${r.is_error?' · error':''}</div>`;}
    h+='</div>';
  });
  detail.innerHTML=h;
}
function route(){
  const p=new URLSearchParams(location.hash.slice(1));
  if(p.has('q')) q.value=p.get('q');
  if(p.has('outcome')) outcome.value=p.get('outcome');
  draw(); if(p.has('ep')) open(+p.get('ep'));
}
q.oninput=draw; outcome.onchange=draw; window.onhashchange=route; route();
"""


def render_transcripts(episodes: Sequence[Episode], title: str = "simenv episodes") -> str:
    """One HTML page listing the episodes (filter by task and outcome); click one to read it."""
    data = json.dumps([e.to_dict() for e in episodes], default=str).replace("</", "<\\/")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<header><b>{html.escape(title)}</b> · <span id="count"></span> ·
<input id="q" placeholder="filter by task id"> <select id="outcome"><option value="all">all
</option><option value="success">success</option><option value="failure">failure</option>
<option value="invalid">invalid</option></select></header>
<main><div id="list"></div><div id="detail"><p class="meta">Pick an episode.</p></div></main>
<script type="application/json" id="data">{data}</script><script>{_SCRIPT}</script></body></html>
"""


def _bars(values: Sequence[float], labels: Sequence[str], title: str, top: float = 1.0) -> str:
    width, height, pad = 460, 180, 28
    n = max(len(values), 1)
    step = (width - 2 * pad) / n
    top = max(top, max(values, default=0.0), 1e-9)
    bars = []
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = (height - 2 * pad) * v / top
        x = pad + i * step
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{height - pad - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="#36c"><title>{html.escape(label)}: {v:.3f}</title></rect>'
        )
        if n <= 16:
            bars.append(
                f'<text x="{x + step / 2:.1f}" y="{height - pad + 12}" font-size="10" '
                f'text-anchor="middle">{html.escape(label)}</text>'
            )
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><svg width="{width}" '
        f'height="{height}" role="img"><line x1="{pad}" y1="{height - pad}" x2="{width - pad}" '
        f'y2="{height - pad}" stroke="#999"/>{"".join(bars)}</svg></figure>'
    )


def _histogram(values: Sequence[float], bins: int, title: str) -> str:
    if not values:
        return _bars([], [], title)
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - low) / span * bins), bins - 1)] += 1
    labels = [f"{low + span * i / bins:.2g}" for i in range(bins)]
    return _bars([float(c) for c in counts], labels, title, top=0)


def render_report(metrics: dict[str, Any], episodes: Sequence[Episode], title: str) -> str:
    """The evaluation report: headline metrics and plots (reward, pass@k, turns, per task)."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_show(v))}</td></tr>"
        for k, v in metrics.items()
        if k != "tasks"
    )
    valid = [e for e in episodes if e.valid]
    ks = sorted(int(k.split("@")[1]) for k in metrics if k.startswith("eval/pass@"))
    tasks = metrics.get("tasks", {})
    plots = [
        _histogram([e.reward for e in valid], 10, "reward distribution"),
        _bars([metrics[f"eval/pass@{k}"] for k in ks], [f"k={k}" for k in ks], "pass@k"),
        _histogram([float(e.turns) for e in valid], 8, "turns per episode"),
        _bars([t["success"] for t in tasks.values()], list(tasks), "success per task"),
    ]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE} figure{{display:inline-block;margin:10px}}</style></head><body>
<header><b>{html.escape(title)}</b></header><div style="padding:12px 18px">
<table>{rows}</table><div>{"".join(plots)}</div></div></body></html>
"""


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)
