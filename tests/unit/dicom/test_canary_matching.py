"""The PHI canary check itself: it must find every leak and no chance digits."""

from __future__ import annotations

import pytest

from tests.dicom_support import canaries_in


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"patient": "MRN-CANARY-991177"}', ["991177", "MRN-CANARY-991177"]),
        ('{"patient": "991177"}', ["991177"]),
        ("id=991177 rest", ["991177"]),
        ("born 19450607.", ["19450607"]),
        ("name CANARYDOE^X", ["CANARYDOE"]),
    ],
)
def test_a_leaked_canary_is_found(text: str, found: list[str]) -> None:
    assert canaries_in(text) == found


@pytest.mark.parametrize(
    "text",
    [
        "uid 2.25.123499117788812",  # inside a random UID
        '"ts": "2026-12-01T06:03:51.991177Z"',  # a timestamp's microseconds
        "sha256 ab991177cd00",  # inside a hash
        "2.25.991177",  # a UID component
        "took 0.991177 s",
    ],
)
def test_chance_digits_are_not_a_leak(text: str) -> None:
    assert canaries_in(text) == []
