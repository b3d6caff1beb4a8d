"""``radstream lag``: a named group the broker does not know, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from cli import lag as cli_lag
from cli.main import main
from observability.lag import LagReader
from schemas.settings import Settings, load_settings
from streams.kafka import GroupMembership, KafkaClientConfig, TopicPartition

pytestmark = pytest.mark.requirement("RS-OBS-02")


class FakeAdmin:
    """A cluster holding ``groups``, each with one member and no committed offset.

    Like Kafka, it describes a group it does not know as an empty ``Dead`` group.
    """

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = list(groups)

    async def list_groups(self) -> list[str]:
        return self.groups

    async def group_membership(self, group: str) -> GroupMembership:
        return GroupMembership(1, "Stable") if group in self.groups else GroupMembership(0, "Dead")

    async def group_offsets(self, _group: str) -> dict[TopicPartition, int]:
        return {}

    async def topic_partitions(self, _topics: set[str]) -> dict[str, list[int]]:
        return {}


class FakeConsumer:
    async def end_offsets(self, _partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {}

    async def beginning_offsets(
        self, _partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {}


class OfflineReader(LagReader):
    """A lag reader over the fakes: starting it connects nothing."""

    def __init__(self, groups: Sequence[str]) -> None:
        super().__init__(KafkaClientConfig("127.0.0.1:1"), "radstream.")
        self.groups = groups

    async def start(self) -> None:
        self._admin, self._consumer = FakeAdmin(self.groups), FakeConsumer()  # type: ignore[assignment]

    async def stop(self) -> None:
        self._admin = self._consumer = None


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker knows one group, ``radstream-validation``."""

    def reader(_settings: Settings) -> LagReader:
        return OfflineReader(["radstream-validation"])

    monkeypatch.setattr(cli_lag, "_reader", reader)


@pytest.mark.usefixtures("cluster")
class TestNamedGroups:
    @pytest.mark.parametrize("json_flag", [[], ["--json"]])
    def test_an_unknown_group_is_not_found(
        self, json_flag: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--group nosuch: exit 4 and one line naming it, no table (was status=error, exit 1)."""
        argv = ["lag", "--group", "radstream-validation", "--group", "nosuch", *json_flag]
        assert main([*argv, "--interval", "0.1"], settings=load_settings()) == 4
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert captured.err.startswith(
            "radstream lag: RESOURCE_NOT_FOUND: no consumer group 'nosuch' on the broker"
        )
        assert "'radstream lag' without --group lists" in captured.err

    def test_a_known_idle_group_without_commits_passes(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A group with a member that committed nothing yet (idle) is judged ok: exit 0."""
        argv = ["lag", "--group", "radstream-validation", "--interval", "0.1"]
        assert main(argv, settings=load_settings()) == 0
        captured = capsys.readouterr()
        assert (
            "radstream-validation  status=ok (members joined, no partition assigned yet)"
            in captured.out
        )
        assert captured.err == ""


class TestUnknownGroups:
    async def test_lists_the_unknown_once_in_the_order_given(self) -> None:
        """Known groups are dropped, repeats are named once."""
        async with OfflineReader(["a", "c"]) as reader:
            assert await reader.unknown_groups(["b", "a", "d", "b", "c"]) == ["b", "d"]


class TestServe:
    async def test_an_unknown_group_is_exported_as_error_not_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--serve keeps running for a group that does not exist yet (its worker may start
        after the exporter) and exports it with status error."""

        async def no_dead_letters(*_args: object) -> int:
            return 0

        monkeypatch.setattr(cli_lag, "_reader", lambda _settings: OfflineReader([]))
        monkeypatch.setattr(cli_lag, "waiting_count", no_dead_letters)
        settings = load_settings(observability={"metrics_host": "127.0.0.1", "metrics_port": 0})
        registry, stop = CollectorRegistry(), asyncio.Event()
        await asyncio.wait_for(  # bounded: the first poll stops it
            cli_lag.run_lag_exporter(
                settings,
                ["radstream-later"],
                0.1,
                stop,
                registry=registry,
                on_listening=lambda _port: stop.set(),
            ),
            10,
        )
        status = {"group": "radstream-later", "status": "error"}
        assert registry.get_sample_value("radstream_consumer_group_status", status) == 1
