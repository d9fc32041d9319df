"""A notification as plain text (e-mail, chat): subject line first, root cause first."""

from __future__ import annotations

from typing import Any


def subject(payload: dict[str, Any]) -> str:
    alerts = payload.get("alerts", [])
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    first = alerts[0] if alerts else {}
    labels = first.get("labels", {})
    what = labels.get("alertname", "alert")
    where = first.get("annotations", {}).get("root_cause", "")
    n_sym = int(first.get("annotations", {}).get("symptom_count", "0") or 0)
    more = f" (+{n_sym} affected)" if n_sym else ""
    state = f"FIRING:{firing}" if firing else "RESOLVED"
    extra = f" and {len(alerts) - 1} more" if len(alerts) > 1 else ""
    return f"[{state}] {what} {where}{more}{extra}".strip()


def body(payload: dict[str, Any]) -> str:
    lines: list[str] = []
    for a in payload.get("alerts", []):
        labels, ann = a.get("labels", {}), a.get("annotations", {})
        inc = a.get("incident", {})
        lines.append(
            f"{a.get('status', '').upper()}: {labels.get('alertname', '')} — incident {inc.get('id', '?')}"
        )
        if ann.get("summary"):
            lines.append(f"  {ann['summary']}")
        lines.append(f"  root cause: {ann.get('root_cause', '-')}, severity {labels.get('severity', '-')}")
        lines.append(
            f"  since {a.get('startsAt')}"
            + ("" if a.get("status") == "firing" else f", until {a.get('endsAt')}")
        )
        symptoms = inc.get("symptoms", [])
        if symptoms:
            lines.append(f"  {len(symptoms)} symptoms (charged to the root cause):")
            lines.extend(f"    - {s['kind']} {s['entity']} since {s['since']}" for s in symptoms[:100])
            if len(symptoms) > 100:
                lines.append(f"    ... and {len(symptoms) - 100} more")
        shown = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items()) if v))
        if a.get("generatorURL"):
            lines.append(f"  {a['generatorURL']}")
        lines.append("")
    return "\n".join(lines)
