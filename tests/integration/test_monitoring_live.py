"""The shipped monitoring against a live pipeline: Prometheus scrapes a real worker and the API.

A private PostgreSQL (never the shared one: it is stopped here), a worker running every stage
and the API as ``radstream api`` wires it, served over HTTP; Debian's Prometheus scrapes both
every second and evaluates ``ops/prometheus/alerts.yml``. One image goes through. Then:

* every family a live process declares is the catalogue, and every metric the alert rules and
  the dashboard use is declared there; every label they group or match on is on the live
  samples of the families that have them;
* on the healthy pipeline no alert is pending or firing;
* PostgreSQL stops and ``RadstreamDatabaseUnavailable`` goes pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

import app
from gateway.tokens import issue_token
from observability.metrics import catalogue
from schemas.settings import Settings
from streams.kafka import KafkaClientConfig, ensure_topics
from tests.integration.database_helpers import database_in_thread
from tests.integration.settings_support import isolated_settings, phantom_storage
from tests.ports import free_port
from tests.prometheus_peer import PrometheusPeer
from tests.promql import alert_rules, dashboard_exprs, family_of, labels_used, metric_names
from tests.reliability.private_postgres import PrivateCluster, running_cluster

pytestmark = pytest.mark.requirement("RS-MON-01", "RS-OBS-04")

# Bounded waits: a result is stored within seconds here; a worker starts within ~20 s on a
# loaded 2-core machine; the worker probes the database every 5 s and Prometheus scrapes and
# evaluates every second, so an alert goes pending within ~10 s of the outage.
START_TIMEOUT_SECONDS = 90
RESULT_TIMEOUT_SECONDS = 90
ALERT_TIMEOUT_SECONDS = 45
TARGET_LABELS = frozenset({"job", "instance", "le"})


@dataclass
class LivePipeline:
    """What the tests look at."""

    settings: Settings
    cluster: PrivateCluster
    prometheus: PrometheusPeer
    worker_metrics: str
    api_metrics: str
    api: httpx.AsyncClient


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL of this module alone (it is stopped by a test)."""
    with running_cluster() as private:
        yield private


@pytest.fixture
def live_settings(
    kafka_bootstrap: str, topic_prefix: str, cluster: PrivateCluster, tmp_path: Path
) -> Iterator[Settings]:
    """Isolated topics, groups, audit key and a migrated database on the private cluster."""
    root = phantom_storage(tmp_path)
    url, drop = database_in_thread(cluster.admin_url)
    yield isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=url,
        topic_prefix=topic_prefix,
        storage_roots=(root,),
        audit_dir=tmp_path,
        observability={"metrics_host": "127.0.0.1", "metrics_port": free_port()},
    )
    with contextlib.suppress(Exception):  # the cluster may be down after the outage test
        drop()


@pytest.fixture
async def live(live_settings: Settings, cluster: PrivateCluster) -> AsyncIterator[LivePipeline]:
    """Worker (every stage, /metrics served) and API (uvicorn), both scraped by Prometheus."""
    settings = live_settings
    await ensure_topics(KafkaClientConfig.from_settings(settings), settings.topic_prefix)
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(settings, app.default_stages(settings), stop, started=started)
    )
    worker_address = f"127.0.0.1:{settings.observability.metrics_port}"
    api_port = free_port()
    prometheus = PrometheusPeer(
        {"radstream-workers": [worker_address], "radstream-api": [f"127.0.0.1:{api_port}"]}
    )
    try:
        await asyncio.wait_for(started.wait(), START_TIMEOUT_SECONDS)
        async with AsyncExitStack() as stack:
            api = await app.build_api(stack, settings)
            config = uvicorn.Config(
                api, host="127.0.0.1", port=api_port, log_config=None, lifespan="off"
            )
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            try:
                await asyncio.to_thread(prometheus.start)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
                    yield LivePipeline(
                        settings,
                        cluster,
                        prometheus,
                        f"http://{worker_address}/metrics",
                        f"http://127.0.0.1:{api_port}/metrics",
                        client,
                    )
            finally:
                server.should_exit = True
                await serving
    finally:
        await asyncio.to_thread(prometheus.stop)
        if not (cluster.data / "postmaster.pid").exists():
            await asyncio.to_thread(cluster.start)  # let the worker's sinks finish cleanly
        stop.set()
        await asyncio.wait_for(worker, START_TIMEOUT_SECONDS)


async def _scrape(url: str) -> dict[str, Any]:
    """The families a /metrics endpoint declares, by name (counters with ``_total``)."""

    def read() -> str:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local test URL
            return str(answer.read().decode())

    families = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(read)):
        if family.name.endswith("_created"):
            continue  # the text format writes counters' creation times as families of their own
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = family
    return families


async def _until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` (run in a thread) every half second until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def _one_image_through(live: LivePipeline) -> None:
    """Submit the sample through the API and wait until its result is stored."""
    headers = {
        "Authorization": f"Bearer {issue_token(live.settings, 'dr-mon', ['clinician'], 600)}"
    }
    image = (live.settings.storage_roots[0] / "ct.dcm").as_uri()
    submitted = await live.api.post(
        "/infer", json={"source": "router-1", "image_uri": image}, headers=headers
    )
    assert submitted.status_code == 202, submitted.text
    event_id = submitted.json()["event_id"]
    deadline = asyncio.get_running_loop().time() + RESULT_TIMEOUT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        lifecycle = await live.api.get(f"/events/{event_id}", headers=headers)
        states = [e["state"] for e in lifecycle.json().get("entries", [])]
        if "stored" in states:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the image was not stored in time")


async def _until_every_stage_counted(live: LivePipeline) -> None:
    """Wait until every stage has counted the image: the audit stage may take it later than
    the results stage stores it (its writer first takes the chain's lease)."""
    wanted = {"validation", "inference", "results_sink", "audit"}
    deadline = asyncio.get_running_loop().time() + RESULT_TIMEOUT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        worker = await _scrape(live.worker_metrics)
        family = worker.get("radstream_stage_events_processed_total")
        if family and wanted <= {s.labels["stage"] for s in family.samples}:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("not every stage counted the image in time")


def _used_families() -> dict[str, set[str]]:
    """Every family the alert rules and dashboard use, with the labels used next to it."""
    used: dict[str, set[str]] = {}
    for expr in [rule["expr"] for rule in alert_rules()] + dashboard_exprs():
        labels = labels_used(expr)
        for name in metric_names(expr):
            used.setdefault(family_of(name), set()).update(labels)
    used.pop("up", None)  # Prometheus's own
    return used


TARGET_LABEL_JOINS = frozenset({"process_start_time_seconds"})


async def test_live_exports_pass_the_shipped_queries_and_alert_only_on_failure(
    live: LivePipeline,
) -> None:
    """Catalogue = live declarations; queries find series; healthy: silent; outage: pending."""
    await _one_image_through(live)
    await _until_every_stage_counted(live)
    worker, api = await _scrape(live.worker_metrics), await _scrape(live.api_metrics)

    radstream = {n for n in worker | api if n.startswith("radstream_")}
    assert radstream == {spec.name for spec in catalogue()}

    declared = worker | api
    for family in _used_families():
        assert family in declared, f"{family} is used by a query but exported by no process"
    live_labels: dict[str, set[str]] = {}
    for families in (worker, api):
        for name, family in families.items():
            for sample in family.samples:
                live_labels.setdefault(name, set()).update(sample.labels)
    # Families the one image moved carry the labels the queries group and match on.
    for family in (
        "radstream_stage_events_processed_total",
        "radstream_stage_processing_seconds",
        "radstream_stage_in_flight_events",
        "radstream_api_request_duration_seconds",
        "radstream_api_auth_total",
        "radstream_inference_duration_seconds",
        "radstream_sink_rows_written_total",
    ):
        assert family in live_labels, f"{family} has no live sample after one image"
    for family, labels in _used_families().items():
        # The process collector's start time is only joined on target labels
        # (``and on (job, instance)``); the union of a query's labels says nothing about it.
        if family in live_labels and family not in TARGET_LABEL_JOINS:
            own = live_labels[family] | TARGET_LABELS
            for label in labels:
                # A query that joins several families names their union; each label must be
                # on this family's samples or on another family the same query uses.
                assert label in own or any(label in v for v in live_labels.values()), (
                    family,
                    label,
                )
    stages = {s.labels["stage"] for s in worker["radstream_stage_events_processed_total"].samples}
    assert {"validation", "inference", "results_sink", "audit"} <= stages

    prometheus = live.prometheus
    await _until(lambda: len(prometheus.query("up == 1")) == 2, 30, "both targets up")
    # The truth: the worker measured the database; nobody but a verifier has a chain verdict.
    up = await _until(lambda: prometheus.query("radstream_database_up"), 30, "database_up")
    assert [r["value"][1] for r in up] == ["1"]
    assert prometheus.query("radstream_audit_chain_valid") == []
    await asyncio.sleep(5)  # several evaluations of every rule over the live series
    assert await asyncio.to_thread(prometheus.alerts) == []

    await asyncio.to_thread(live.cluster.stop)

    def pending() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.alerts()
            if a["labels"]["alertname"] == "RadstreamDatabaseUnavailable"
        ]

    alerts = await _until(pending, ALERT_TIMEOUT_SECONDS, "RadstreamDatabaseUnavailable")
    assert alerts[0]["state"] == "pending"  # `for: 2m`: pending first, firing only if it lasts
    assert alerts[0]["labels"]["job"] == "radstream-workers"
