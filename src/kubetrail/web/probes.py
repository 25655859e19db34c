"""``telemetry.listen_address``: ``/healthz`` and ``/metrics`` of ``run``, ``agent`` and ``collector``.

No authentication, like kubelet probes and Prometheus scrapes inside a cluster: the metrics hold
counts, names of sources, rules and sinks, never event content. Bind it to a pod or loopback
address (the manifests' NetworkPolicy admits only Prometheus). ``/healthz`` answers 200 while the
process serves and ``healthy()`` is true (the pipeline sets it false when it is stopping).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetrail import telemetry
from kubetrail.web.serving import BackgroundServer


def metrics_response(request: Request) -> Response:
    body, content_type = telemetry.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def probes_app(healthy: Callable[[], bool] = lambda: True) -> Starlette:
    async def healthz(_: Request) -> Response:
        ok = healthy()
        return JSONResponse({"status": "ok" if ok else "stopping"}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return metrics_response(request)

    return Starlette(routes=[Route("/healthz", healthz), Route("/livez", healthz), Route("/readyz", healthz),
                             Route("/metrics", metrics)])


def serve_telemetry(listen_address: str, healthy: Callable[[], bool] = lambda: True) -> BackgroundServer:
    """Start the probes/metrics endpoint in the background; ``stop()`` it when the process ends."""
    return BackgroundServer(probes_app(healthy), listen_address, what="telemetry.listen_address").start()
