"""Prometheus metrics of one aggregator process (a registry per app: tests build many)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True, slots=True)
class CloudMetrics:
    registry: CollectorRegistry
    batches: Counter
    rows: Counter
    rejections: Counter
    ingest_seconds: Histogram
    hq_requests: Counter


def build_metrics() -> CloudMetrics:
    registry = CollectorRegistry()
    return CloudMetrics(
        registry=registry,
        batches=Counter("storebox_cloud_batches_total", "Batches received, by outcome", ["status"], registry=registry),
        rows=Counter("storebox_cloud_rows_total", "Outbox rows received in new batches", registry=registry),
        rejections=Counter(
            "storebox_cloud_rejections_total", "Store requests refused, by code", ["code"], registry=registry
        ),
        ingest_seconds=Histogram(
            "storebox_cloud_ingest_seconds",
            "Time to store and apply one batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        ),
        hq_requests=Counter(
            "storebox_cloud_hq_requests_total", "HQ API requests, by endpoint", ["endpoint"], registry=registry
        ),
    )
