"""The report's first screen: per model, whether it is healthy, what changed and when, what to do.

:func:`model_overview` turns one model's data into plain sentences: its health at the end of the
range, its alert transitions grouped by rule (``class_drift: warning at 13:20, critical at 13:30,
ok at 15:50``) with the warnings and critical insights about it, and the suggestions for it, each
with its evidence and the exact command; a fallback of the online shadow check is one of the
changes. :func:`overview_html` draws them as the report's first section, with the live agreement
with the original under the model's name when a shadow check ran. All text from data is
HTML-escaped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from leanml.dashboard.data import ModelData, ReportData, model_shadow_lines
from leanml.dashboard.insights import Insight
from leanml.dashboard.suggest import Suggestion

__all__ = ["ModelOverview", "model_overview", "overview_html"]

#: suggestions that answer an alert come before the others (sorting is stable otherwise)
_FIRST = ("retrain", "drift_review")


@dataclasses.dataclass(frozen=True)
class ModelOverview:
    """The first screen's answer for one model."""

    model: str
    health: str
    changes: list[str]  # what changed and when, oldest first
    actions: list[Suggestion]  # what to do


def _hm(ts: float, day: str | None) -> str:
    t = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return t.strftime("%H:%M" if t.strftime("%Y-%m-%d") == day else "%Y-%m-%d %H:%M")


def _changes(md: ModelData, since: float, until: float) -> list[str]:
    """One sentence per rule that moved in the range: its levels and when."""
    day = dt.datetime.fromtimestamp(since, tz=dt.UTC).strftime("%Y-%m-%d")
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for a in md.alert_history:
        if since <= a["ts"] < until:
            by_rule.setdefault(a["rule"], []).append(a)
    out = []
    for rule, events in sorted(by_rule.items(), key=lambda kv: kv[1][0]["ts"]):
        steps = ", ".join(f"{a['level']} at {_hm(a['ts'], day)}" for a in events)
        worst = max(
            (a for a in events if a["value"] is not None and a["level"] != "ok"),
            key=lambda a: {"warning": 1, "critical": 2}[a["level"]],
            default=None,
        )
        value = f" ({worst['value']:.3g} when it went {worst['level']})" if worst else ""
        still = "; still open" if events[-1]["level"] != "ok" else ""
        out.append(f"{rule}: {steps}{value}{still}.")
    return out


def model_overview(
    md: ModelData,
    data: ReportData,
    insights: Sequence[Insight] = (),
    suggestions: Sequence[Suggestion] = (),
) -> ModelOverview:
    changes = _changes(md, data.since, data.until)
    if md.shadow and (md.shadow.get("alarm") or md.shadow.get("fallen_back")):
        changes.append(f"shadow check: {model_shadow_lines(md)[1]}.")
    changes += [i.text for i in insights if i.model == md.name and i.severity != "info"]
    mine = [s for s in suggestions if s.model == md.name]
    actions = sorted(mine, key=lambda s: s.rule not in _FIRST)  # what the alerts ask first
    return ModelOverview(md.name, md.health, changes, actions)


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def overview_html(
    data: ReportData,
    insights: Sequence[Insight],
    suggestions: Sequence[Suggestion],
    anchors: Mapping[str, str] | None = None,
) -> str:
    """The first section: one row per model (health, what changed and when, what to do);
    ``anchors`` maps a model to the id of its section in the page."""
    anchors = anchors or {}
    rows = []
    for md in data.models.values():
        o = model_overview(md, data, insights, suggestions)
        changed = "".join(f"<li>{_e(c)}</li>" for c in o.changes)
        changed = f"<ul>{changed}</ul>" if changed else "<span class='muted'>nothing fired</span>"
        todo = "".join(
            f"<li><b>{_e(s.title)}</b><br><span class='muted'>Evidence:</span> {_e(s.evidence)}"
            f"<br><code>{_e(s.action)}</code></li>"
            for s in o.actions
        )
        todo = f"<ul>{todo}</ul>" if todo else "<span class='muted'>nothing to do</span>"
        verdict = "healthy" if o.health == "healthy" else f"not healthy ({o.health})"
        shadow = model_shadow_lines(md)[:1]  # live agreement with the original, when checked
        shadow_html = "".join(f"<br><span class='muted shadow'>{_e(s)}</span>" for s in shadow)
        rows.append(
            f"<tr><td><a href='#{_e(anchors.get(md.name, md.name))}'>{_e(md.name)}</a><br>"
            f"<span class='badge {_e(o.health)}'>{_e(verdict)}</span>{shadow_html}</td>"
            f"<td>{changed}</td><td>{todo}</td></tr>"
        )
    return (
        "<h2 id='overview'>At a glance</h2><table class='overview'><tr><th>model, now</th>"
        "<th>what changed, and when (UTC)</th><th>what to do</th></tr>" + "".join(rows) + "</table>"
    )
