"""Private peers for the tests that stop a broker or a database (never the shared ones).

Each fixture gives the test its own broker or cluster on free ports and removes it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.private_kafka import PrivateKafka
from tests.reliability.private_postgres import (
    PrivateCluster,
    create_radstream_database,
    running_cluster,
)


@pytest.fixture
def broker() -> Iterator[PrivateKafka]:
    """A private broker of this test alone, removed afterwards."""
    kafka = PrivateKafka()
    kafka.up()
    try:
        yield kafka
    finally:
        kafka.remove()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster of this test alone, removed afterwards."""
    with running_cluster() as private:
        yield private


@pytest.fixture
async def database_url(cluster: PrivateCluster) -> str:
    """The migrated ``radstream`` database on the private cluster."""
    return await create_radstream_database(cluster)
