"""``kubetrail serve``'s ASGI application: the dashboard pages, ``/api/v1``, ``/metrics``, ``/healthz``.

Read-only by construction: every route is GET (HEAD), every request opens the store read-only
and closes it. Layers, outermost first: security headers on every answer -> authentication (all
but ``/healthz``) -> per-route telemetry (``WebRequestServed``) -> Starlette routing.

The verify result shown on the overview is cached (``VerifyCache``): a full ``verify`` re-hashes
the whole trail, so it runs at most once per ``verify_every_secs`` and only when asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kubetrail import telemetry
from kubetrail.store.api import Store
from kubetrail.timefmt import format_ns
from kubetrail.web.auth import App, Authenticator, Receive, Scope, Send, secure_headers
from kubetrail.web.status import run_verify

VERIFY_EVERY_SECS = 300.0


@dataclass
class VerifyCache:
    """The last full verify: recomputed when older than ``every_secs`` (one at a time)."""

    data_dir: str
    every_secs: float = VERIFY_EVERY_SECS
    result: dict[str, Any] | None = None
    at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, store: Store) -> dict[str, Any]:
        with self.lock:
            if self.result is None or time.monotonic() - self.at > self.every_secs:
                self.result = run_verify(store, self.data_dir)
                self.at = time.monotonic()
            return self.result


@dataclass
class ServeContext:
    data_dir: str
    open_store: Callable[[], Store]
    verify: VerifyCache
    templates: Environment = field(default_factory=lambda: templates())

    @contextmanager
    def store(self) -> Any:
        store = self.open_store()
        try:
            yield store
        finally:
            store.close()

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        html = self.templates.get_template(template).render(request=request, path=request.url.path, **values)
        return Response(html, status_code=status, media_type="text/html; charset=utf-8")


def _query_without(params: Any, *names: str) -> str:
    return urlencode([(k, v) for k, v in params.multi_items() if k not in names])


def templates() -> Environment:
    """The pages' Jinja2 environment: autoescaped, with the filters the templates use."""
    env = Environment(loader=PackageLoader("kubetrail.web", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ns"] = lambda v: format_ns(v) if isinstance(v, int) else (v or "")
    env.filters["without"] = _query_without
    env.filters["with_cursor"] = lambda params, cursor: urlencode(
        [*[(k, v) for k, v in params.multi_items() if k != "cursor"], ("cursor", cursor)])
    return env


def _route_telemetry(app: App) -> App:
    """One ``WebRequestServed`` per answer, labelled by the route's path template (not the URL)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = {"code": 500}

        async def spy(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, spy)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "other")
            telemetry.emit(telemetry.WebRequestServed(route=name, code=status["code"]))

    return wrapped


def build_app(ctx: ServeContext, auth: Authenticator) -> App:
    from kubetrail.web import api, pages  # the route tables
    from kubetrail.web.probes import metrics_response

    async def healthz(_: Request) -> Response:
        return Response('{"status": "ok"}\n', media_type="application/json")

    async def metrics(request: Request) -> Response:
        return metrics_response(request)

    routes = [Route("/healthz", healthz), Route("/metrics", metrics),
              *pages.routes(ctx), *api.routes(ctx),
              Mount("/static", StaticFiles(directory=str(files("kubetrail.web") / "static")), name="static")]
    starlette = Starlette(routes=routes, exception_handlers=pages.exception_handlers(ctx))
    return secure_headers(auth.wrap(_route_telemetry(starlette)))
