"""Property tests: generated patient data never survives masking; structural values always do."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observability.phi import PhiMasker

pytestmark = pytest.mark.requirement("RS-LOG-02", "RS-G-01")

MASKER = PhiMasker()
NAME = st.text(alphabet=string.ascii_letters, min_size=3, max_size=12)
UID = st.builds(
    lambda root, parts: ".".join([root, *parts]),
    st.sampled_from(["1", "2"]),
    st.lists(st.integers(0, 10**12).map(str), min_size=2, max_size=8),
).filter(lambda uid: len(uid) <= 64)
FIELD_SEP = st.sampled_from([" ", ", ", "; ", " | "])


class TestPhiNeverSurvives:
    @settings(max_examples=200, deadline=None)
    @given(family=NAME, given_name=NAME, prefix=st.text(max_size=20), sep=FIELD_SEP)
    def test_person_names_in_free_text(
        self, family: str, given_name: str, prefix: str, sep: str
    ) -> None:
        """A DICOM person name anywhere in a message is masked."""
        text = f"{prefix}{sep}{family}^{given_name}{sep}done"
        assert f"{family}^{given_name}" not in MASKER.mask_text(text)

    @settings(max_examples=200, deadline=None)
    @given(
        value=st.one_of(NAME, st.integers(), st.lists(NAME, max_size=3)),
        key=st.sampled_from(["PatientName", "patient_id", "(0010,1000)", "PatientAddress"]),
        depth=st.integers(0, 4),
    )
    def test_phi_keys_at_any_depth(self, value: object, key: str, depth: int) -> None:
        """A PHI key's value is replaced however deeply it is nested."""
        data: object = {key: value}
        for _ in range(depth):
            data = {"nested": [data]}
        masked = MASKER.mask_value(data)
        for _ in range(depth):
            masked = masked["nested"][0]
        assert masked == {key: "[REDACTED_PHI]"}


class TestStructuralValuesSurvive:
    @settings(max_examples=300, deadline=None)
    @given(uid=UID, sep=FIELD_SEP)
    def test_uids(self, uid: str, sep: str) -> None:
        """DICOM UIDs in free text are never mangled."""
        text = f"study{sep}{uid}{sep}ok"
        assert MASKER.mask_text(text) == text

    @settings(max_examples=200, deadline=None)
    @given(
        seconds=st.integers(0, 10**9),
        micros=st.integers(0, 999_999),
        latency=st.floats(0, 100, allow_nan=False),
        offset=st.integers(0, 2**40),
    )
    def test_timestamps_latencies_offsets_and_ids(
        self, seconds: int, micros: int, latency: float, offset: int
    ) -> None:
        """ISO timestamps, latencies, offsets and UUIDs in free text are never mangled."""
        moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
        text = (
            f"at {moment.isoformat()} took {latency}s offset={offset} "
            f"event {uuid.uuid4()} corr {uuid.uuid4().hex}"
        )
        assert MASKER.mask_text(text) == text
