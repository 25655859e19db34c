"""The dashboard's pages: server-rendered HTML (Jinja2), no JavaScript needed, one page per URL.

Every listing is paged (``?cursor=``, "older" link) and filtered by query-string parameters that
its form submits with GET, so every view is a link that can be shared and reloaded. Charts are
SVG drawn by the templates. Bodies shown are the stored ones, which were redacted before they
were written.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubetrail.alerts.alert import PRIORITIES
from kubetrail.credentials.model import KINDS
from kubetrail.errors import InputError, NotFoundError
from kubetrail.store.queries import QueryFilters
from kubetrail.trail import keys
from kubetrail.web import posture, queries
from kubetrail.web.app import ServeContext
from kubetrail.web.documents import alert_document
from kubetrail.web.evidence import check_leaf
from kubetrail.web.status import overview

MINUTE_NS = 60 * 10**9


def activity(store: Any, bars: int = 60) -> list[dict[str, Any]]:
    """Records per minute over the last hour of the trail's event time (the overview's chart)."""
    newest = next(iter(store.query(QueryFilters(any_kind=True), limit=1, order="DESC")), None)
    if newest is None:
        return []
    last = newest.time
    start = (last // MINUTE_NS - bars + 1) * MINUTE_NS
    counts = [0] * bars
    for t, _kind, n in store.histogram(start, MINUTE_NS):
        counts[(t - start) // MINUTE_NS] += n
    return [{"start_ns": start + i * MINUTE_NS, "count": n} for i, n in enumerate(counts)]


def routes(ctx: ServeContext) -> list[Route]:
    def overview_page(request: Request) -> Response:
        with ctx.store() as store:
            doc = overview(store, ctx.data_dir, verify=lambda: ctx.verify.get(store))
            chart = activity(store)
        return ctx.page(request, "overview.html", status_doc=doc, chart=chart)

    def alerts_page(request: Request) -> Response:
        params = request.query_params
        with ctx.store() as store:
            page = queries.alerts_page(store, params, queries.limit_of(params), params.get("cursor"))
        return ctx.page(request, "alerts.html", page=page, params=params, priorities=PRIORITIES)

    def alert_page(request: Request) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit():
            raise NotFoundError(f"no alert {raw!r}")
        with ctx.store() as store:
            doc = alert_document(store, int(raw))
            verifier = keys.load_verifier(ctx.data_dir)
            proofs = {r["leaf_index"]: check_leaf(store, verifier, r["leaf_index"]) for r in doc["records"]
                      if r["leaf_index"] is not None}
        events = {r["leaf_index"]: json.dumps(r["event"], indent=2, sort_keys=True) for r in doc["records"]}
        return ctx.page(request, "alert.html", alert=doc, proofs=proofs, events=events)

    def credentials_page(request: Request) -> Response:
        params = request.query_params
        with ctx.store() as store:
            page = queries.credentials_page(store, params, queries.limit_of(params), params.get("cursor"))
        return ctx.page(request, "credentials.html", page=page, params=params, kinds=KINDS)

    def credential_page(request: Request) -> Response:
        with ctx.store() as store:
            doc = queries.credential_detail(store, request.path_params["id"])
            extra = queries.credential_extras(store, doc)
        return ctx.page(request, "credential.html", cred=doc, chart=extra["chart"], alerts=extra["alerts"])

    def search_page(request: Request) -> Response:
        params = request.query_params
        page = None
        if any(params.get(f) for f in (*queries.SEARCH_FIELDS, "user_agent", "since", "until")) or "go" in params:
            with ctx.store() as store:
                page = queries.events_page(store, queries.search_filters(params), queries.limit_of(params),
                                           params.get("cursor"))
        return ctx.page(request, "search.html", page=page, params=params, fields=queries.SEARCH_FIELDS)

    def timeline_page(request: Request) -> Response:
        params = request.query_params
        entity, value = params.get("entity") or "user", params.get("value") or ""
        page = None
        if value:
            with ctx.store() as store:
                page = queries.timeline_page(store, entity, value, queries.limit_of(params), params.get("cursor"))
        return ctx.page(request, "timeline.html", page=page, params=params, entity=entity, value=value,
                        entities=queries.TIMELINE_ENTITIES)

    def posture_page(request: Request) -> Response:
        return ctx.page(request, "posture.html", results=posture.latest(ctx.data_dir))

    return [Route("/", overview_page), Route("/alerts", alerts_page), Route("/alerts/{id}", alert_page),
            Route("/credentials", credentials_page), Route("/credentials/{id:path}", credential_page),
            Route("/search", search_page), Route("/timeline", timeline_page), Route("/posture", posture_page)]


def exception_handlers(ctx: ServeContext) -> dict[Any, Any]:
    """A bad filter is a 400 and a missing alert/credential a 404, each as a page (or JSON under /api)."""

    def page_or_json(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            from kubetrail.web.api import json_response

            return json_response({"error": message}, status)
        return ctx.page(request, "error.html", status=status, status_code=status, message=message)

    def input_error(request: Request, exc: Exception) -> Response:
        text = str(exc)
        return page_or_json(request, 404 if text.startswith(("no alert", "no credential")) else 400, text)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page_or_json(request, exc.status_code, exc.detail or "")

    def not_found(request: Request, exc: Exception) -> Response:
        return page_or_json(request, 404, str(exc))

    return {InputError: input_error, NotFoundError: not_found, HTTPException: http_error}
