"""Topic catalogue: one place for every name, audit topic never compacted or expiring."""

from __future__ import annotations

import pytest

from schemas.events import Priority
from streams.topics import (
    TOPIC_SPECS,
    TopicKey,
    TopicNames,
    arrival_topic,
    validated_topic,
    value_models,
)

pytestmark = pytest.mark.requirement("RS-TOP-01")


class TestTopicCatalogue:
    def test_required_topics_exist(self) -> None:
        """The six topics the issue names are in the catalogue."""
        suffixes = {key.value for key in TOPIC_SPECS}
        assert {
            "images.arrived",
            "images.validated",
            "images.rejected",
            "inference.results",
            "audit.log",
            "deadletter",
        } <= suffixes

    def test_audit_topic_is_append_only_forever(self) -> None:
        """The audit log is delete-policy with infinite retention, never compacted."""
        spec = TOPIC_SPECS[TopicKey.AUDIT_LOG]
        assert spec.configs() == {"cleanup.policy": "delete", "retention.ms": "-1"}

    def test_names_carry_the_prefix(self) -> None:
        """Every name is prefix + suffix, so deployments and test runs can share a cluster."""
        names = TopicNames("site-a.")
        assert names.arrived == "site-a.images.arrived"
        assert names.validated == "site-a.images.validated"
        assert names.rejected == "site-a.images.rejected"
        assert names.results == "site-a.inference.results"
        assert names.audit == "site-a.audit.log"
        assert names.deadletter == "site-a.deadletter"
        assert names.api_actions == "site-a.api.actions"
        assert set(names.all().values()) == {f"site-a.{k.value}" for k in TOPIC_SPECS}

    def test_every_topic_has_a_value_model(self) -> None:
        """Each topic's values have a contract."""
        assert set(value_models()) == set(TOPIC_SPECS)


class TestStatLane:
    """Stat work travels on topics of its own, so it never queues behind routine work."""

    pytestmark = pytest.mark.requirement("RS-CDS-02")

    @pytest.mark.parametrize(
        ("priority", "arrival", "validated"),
        [
            (Priority.STAT, TopicKey.IMAGES_ARRIVED_STAT, TopicKey.IMAGES_VALIDATED_STAT),
            (Priority.URGENT, TopicKey.IMAGES_ARRIVED, TopicKey.IMAGES_VALIDATED),
            (Priority.ROUTINE, TopicKey.IMAGES_ARRIVED, TopicKey.IMAGES_VALIDATED),
        ],
    )
    def test_lane_by_priority(
        self, priority: Priority, arrival: TopicKey, validated: TopicKey
    ) -> None:
        """Only stat takes the stat lane; urgent and routine share the routine topics."""
        assert (arrival_topic(priority), validated_topic(priority)) == (arrival, validated)

    def test_stat_lanes_carry_the_same_contracts(self) -> None:
        """A stat topic carries exactly the routine topic's event model."""
        models = value_models()
        assert models[TopicKey.IMAGES_ARRIVED_STAT] is models[TopicKey.IMAGES_ARRIVED]
        assert models[TopicKey.IMAGES_VALIDATED_STAT] is models[TopicKey.IMAGES_VALIDATED]
