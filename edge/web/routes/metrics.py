"""Prometheus metrics at the root, unauthenticated on the LAN like any exporter."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.web.deps import Deps

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition format"}},
    summary="Prometheus metrics / 监控指标",
)
def metrics(deps: Deps) -> Response:
    """Counters and gauges of the box in Prometheus text format. No login: scrape it from the LAN."""
    return Response(generate_latest(deps.metrics_registry), media_type=CONTENT_TYPE_LATEST)
