"""Prometheus metrics of controllers and workers, and the HTTP endpoint that serves them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

sessions = Gauge("corral_sessions", "Sessions by state, as this process sees them",
                 ["component", "state"], registry=REGISTRY)
warm_pool = Gauge("corral_warm_pool_sandboxes", "Prestarted sandboxes ready to be claimed", ["worker_id"], registry=REGISTRY)
workers = Gauge("corral_workers", "Live workers known to the controller", registry=REGISTRY)
action_seconds = Histogram("corral_action_seconds", "Action execution time in the worker, by kind",
                           ["kind"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
queue_wait_seconds = Histogram("corral_action_queue_wait_seconds",
                               "Time from an action's arrival in the stream to the start of its execution",
                               buckets=_LATENCY_BUCKETS, registry=REGISTRY)
failures = Counter("corral_failures_total", "Error observations and error replies, by code",
                   ["component", "code"], registry=REGISTRY)
create_seconds = Histogram("corral_session_create_seconds", "Session create->ready as the worker measures it",
                           ["warm"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on a background thread (prometheus_client's own server; it never touches the loop)."""
    start_http_server(port, addr=host, registry=REGISTRY)
