"""``radstream dicom listen`` (app.run_listener) exports what its probes measure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import app
from tests.integration.settings_support import isolated_settings
from tests.ports import free_port

pytestmark = pytest.mark.requirement("RS-MON-01")

# The listener starts within seconds; its health loop probes the broker every 5 s.
LISTEN_TIMEOUT_SECONDS = 60
PROBE_TIMEOUT_SECONDS = 20


class TestListenerMetrics:
    async def test_broker_probe_sets_broker_up(
        self, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
    ) -> None:
        """The listener's broker probe is exported as radstream_broker_up (alerts read it)."""
        root = tmp_path / "images"
        root.mkdir()
        settings = isolated_settings(
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=topic_prefix,
            storage_roots=(root,),
            dicom={"port": free_port()},
        )
        registry = CollectorRegistry()
        stop = asyncio.Event()
        listening = asyncio.Event()
        task = asyncio.create_task(
            app.run_listener(
                settings,
                stop,
                registry=registry,
                serve_http=False,
                on_listening=lambda _address: listening.set(),
            )
        )
        try:
            await asyncio.wait_for(listening.wait(), LISTEN_TIMEOUT_SECONDS)
            for _ in range(PROBE_TIMEOUT_SECONDS * 5):
                if registry.get_sample_value("radstream_broker_up") is not None:
                    break
                await asyncio.sleep(0.2)
            assert registry.get_sample_value("radstream_broker_up") == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, LISTEN_TIMEOUT_SECONDS)
