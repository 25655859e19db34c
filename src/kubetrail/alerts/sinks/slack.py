"""Slack incoming webhook: ``{"text": …, "blocks": […]}`` per alert; Slack answers ``ok``.

``text`` is the notification fallback; the blocks show the priority, rule, subject, ATT&CK tags and
the trail leaf indexes of the evidence, so the reader can prove what they see.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import SlackSinkConfig
from kubetrail.alerts.sinks.http import post_json
from kubetrail.timefmt import format_ns

_EMOJI = {0: ":rotating_light:", 1: ":rotating_light:", 2: ":red_circle:", 3: ":red_circle:",
          4: ":warning:", 5: ":large_blue_circle:", 6: ":information_source:", 7: ":grey_question:"}


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(a: Alert) -> dict[str, Any]:
    leaves = ", ".join(str(e.leaf_index) for e in a.evidence[:10] if e.leaf_index is not None) or "-"
    tags = ", ".join(a.mitre) or "-"
    head = f"{_EMOJI.get(a.priority_level, '')} *{a.priority}* {_escape(a.rule)}"
    return {
        "text": f"[{a.priority}] {a.rule}: {a.output}"[:3000],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": head}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(a.output)[:2900]}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"subject `{_escape(a.subject)}` · {format_ns(a.time)} · "
                                           f"ATT&amp;CK {tags} · trail leaves {leaves} · alert #{a.id}"}]},
        ],
    }


class SlackSink:
    def __init__(self, config: SlackSinkConfig) -> None:
        self.name = config.name
        self.config = config

    def send(self, alerts: list[Alert]) -> None:
        url = self.config.resolved_url()
        for a in alerts:
            post_json(url, slack_message(a), self.config.timeout_secs, self.config.headers())
