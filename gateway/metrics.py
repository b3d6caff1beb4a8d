"""The gateway's Prometheus metrics, registered on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    """Request counts and latencies by route template, and audit publishing failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "radstream_api_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "radstream_api_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            registry=registry,
        )
        self.audit_failures = Counter(
            "radstream_api_audit_publish_failures_total",
            "API actions that could not be handed to the audit trail.",
            registry=registry,
        )
        self.submissions = Counter(
            "radstream_api_submissions_total",
            "Images accepted for processing, by kind (reference, upload or dicomweb).",
            ("kind",),
            registry=registry,
        )

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request (route is a template, never a concrete id)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
