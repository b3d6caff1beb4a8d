"""The ``radstream lag`` parser, the lag reader's fetch planning and lifecycle (no broker)."""

from __future__ import annotations

import argparse

import pytest
from aiokafka.structs import TopicPartition

from observability.lag import LagReader, _rounds
from observability.lag_cli import cmd_lag, register

pytestmark = pytest.mark.requirement("RS-OBS-02")


def parse(*argv: str) -> argparse.Namespace:
    """Parse ``argv`` with a parser that only has ``lag`` registered."""
    parser = argparse.ArgumentParser(prog="radstream")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["lag", *argv])


class TestParser:
    def test_defaults(self) -> None:
        """Without options: one-off table, default interval, every group."""
        args = parse()
        assert (args.serve, args.interval, args.group, args.func) == (False, None, None, cmd_lag)

    def test_serve_interval_and_groups(self) -> None:
        """--serve, --interval and repeated --group are parsed."""
        args = parse("--serve", "--interval", "2.5", "--group", "a", "--group", "b")
        assert (args.serve, args.interval, args.group) == (True, 2.5, ["a", "b"])


class TestRounds:
    def test_one_partition_at_two_offsets_takes_two_rounds(self) -> None:
        """Two groups at different offsets of one partition need two seeks."""
        tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
        rounds = _rounds([(tp0, 5), (tp0, 9), (tp1, 2)])
        assert rounds == [{tp0: 5, tp1: 2}, {tp0: 9}]


class TestReaderLifecycle:
    async def test_stop_before_start_is_a_no_op(self) -> None:
        """Closing a reader whose start failed or never ran touches no connection."""
        reader = LagReader("127.0.0.1:1", "p.")
        await reader.stop()
        assert (reader._admin, reader._consumer) == (None, None)
