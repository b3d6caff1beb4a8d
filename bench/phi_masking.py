"""Benchmark: cost of PHI masking per log event (the masker runs on every line).

Run: PYTHONPATH=. .venv/bin/python bench/phi_masking.py
"""

from __future__ import annotations

import timeit
import uuid

from observability.phi import PhiMasker

TYPICAL = {
    "event": "image_rejected",
    "correlation_id": uuid.uuid4().hex,
    "event_id": str(uuid.uuid4()),
    "stage": "validation",
    "topic": "radstream.images.arrived",
    "partition": 1,
    "offset": 123456,
    "error_code": "CHECKSUM_MISMATCH",
    "reason": "The declared sha256 differs from the SHA-256 of the bytes read.",
    "latency_seconds": 0.0123,
    "timestamp": "2026-11-27T22:54:52.123Z",
    "level": "info",
}
LIBRARY_LINE = {
    "event": "Heartbeat failed for group radstream-validation: coordinator 127.0.0.1:9092 (id 1)",
    "logger": "aiokafka.consumer.group_coordinator",
    "level": "warning",
    "timestamp": "2026-11-27T22:54:52.123Z",
}


def main() -> None:
    """Print microseconds per masked event for a typical stage line and a library line."""
    masker = PhiMasker(mask_ip_addresses=True)
    for name, event in (("typical stage line", TYPICAL), ("library line", LIBRARY_LINE)):
        number = 20_000
        seconds = timeit.timeit(lambda event=event: masker(None, "info", event), number=number)
        print(f"{name}: {seconds / number * 1e6:.1f} us/event")


if __name__ == "__main__":
    main()
