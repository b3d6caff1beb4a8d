"""Structured logging with PHI masking, Prometheus metrics, consumer-lag monitor and health."""
