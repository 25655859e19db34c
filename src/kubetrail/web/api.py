"""``/api/v1``: the CLI's ``--json`` documents over HTTP (see ``web.documents``).

| route | CLI twin | shape |
| --- | --- | --- |
| ``/api/v1/status`` | ``status --json`` | the status document |
| ``/api/v1/events`` | ``query --json`` | page of ``record_document`` (+ ``event`` with ``?body=1``) |
| ``/api/v1/alerts`` | ``alerts --json`` | page of ``Alert.to_json()`` |
| ``/api/v1/alerts/{id}`` | ``alerts show ID --json`` | ``alert_document`` |
| ``/api/v1/credentials`` | ``creds list --json`` | page of inventory entries (riskiest first) |
| ``/api/v1/credentials/{id}`` | ``creds show ID --json`` | the ``show`` document |

A page is ``{"items": [...], "next": CURSOR|null}``: pass ``?cursor=CURSOR`` (with the same
filters) for the next one; ``limit`` is 1..500 (default 50). Errors are
``{"error": "one line"}`` with 400 (bad filter or cursor) or 404 (no such alert or credential).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubetrail.errors import InputError, NotFoundError
from kubetrail.web import queries
from kubetrail.web.app import ServeContext
from kubetrail.web.documents import alert_document, record_document
from kubetrail.web.status import overview


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc, default=str) + b"\n", status_code=status, media_type="application/json")


def _missing(exc: InputError) -> bool:
    return str(exc).startswith(("no alert", "no credential"))


def routes(ctx: ServeContext) -> list[Route]:
    def guarded(fn: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                with ctx.store() as store:
                    return json_response(fn(request, store))
            except NotFoundError as exc:
                return json_response({"error": str(exc)}, 404)
            except InputError as exc:
                return json_response({"error": str(exc)}, 404 if _missing(exc) else 400)

        return endpoint

    def status(request: Request, store: Any) -> Any:
        return overview(store, ctx.data_dir, verify=lambda: ctx.verify.get(store))

    def events(request: Request, store: Any) -> Any:
        params = request.query_params
        page = queries.events_page(store, queries.search_filters(params), queries.limit_of(params),
                                   params.get("cursor"))
        body = params.get("body") in ("1", "true")
        return {"items": [record_document(r) | ({"event": r.event()} if body else {}) for r in page.items],
                "next": page.next}

    def alerts(request: Request, store: Any) -> Any:
        params = request.query_params
        page = queries.alerts_page(store, params, queries.limit_of(params), params.get("cursor"))
        return {"items": [a.to_json() for a in page.items], "next": page.next}

    def alert(request: Request, store: Any) -> Any:
        raw = request.path_params["id"]
        if not raw.isdigit():
            raise NotFoundError(f"no alert {raw!r}")
        return alert_document(store, int(raw))

    def credentials(request: Request, store: Any) -> Any:
        params = request.query_params
        page = queries.credentials_page(store, params, queries.limit_of(params), params.get("cursor"))
        return {"items": page.items, "next": page.next, "total": page.extra["total"]}

    def credential(request: Request, store: Any) -> Any:
        return queries.credential_detail(store, request.path_params["id"])

    return [Route("/api/v1/status", guarded(status)), Route("/api/v1/events", guarded(events)),
            Route("/api/v1/alerts", guarded(alerts)), Route("/api/v1/alerts/{id}", guarded(alert)),
            Route("/api/v1/credentials", guarded(credentials)),
            Route("/api/v1/credentials/{id:path}", guarded(credential))]
