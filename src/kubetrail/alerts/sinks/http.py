"""The one HTTP POST every network sink uses (stdlib only): JSON in, status checked, errors typed."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from kubetrail.errors import SinkError

USER_AGENT = "kubetrail-alerts/1"


def post_json(url: str, payload: Any, timeout_secs: float, headers: dict[str, str] | None = None) -> bytes:
    """POST ``payload`` as JSON; returns the body of a 2xx answer, raises ``SinkError`` otherwise.

    The error names the host, never the full URL: Slack and many webhooks carry their secret in
    the path.
    """
    body = orjson.dumps(payload, default=str)
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", USER_AGENT)
    for k, v in (headers or {}).items():
        if v:
            req.add_header(k, v)
    host = urllib.request.urlparse(url).netloc or "?"
    try:
        with urllib.request.urlopen(req, timeout=timeout_secs) as resp:  # noqa: S310 - configured by the operator
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        raise SinkError(f"{host} answered HTTP {exc.code}" + (f" (retry after {retry}s)" if retry else "")) from exc
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SinkError(f"{host} unreachable: {reason}") from exc
