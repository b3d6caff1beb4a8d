"""The correlation-id owner: the accepted forms, the canonical form, generation and derivation."""

from __future__ import annotations

import re
import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.correlation import (
    CORRELATION_ID_HEADER,
    MAX_CORRELATION_ID_LENGTH,
    accept_correlation_id,
    correlation_id_from_headers,
    derived_correlation_id,
    new_correlation_id,
    with_correlation_header,
)

CANONICAL = re.compile(r"^(?=[0-9a-f]*[a-f])(?:[0-9a-f]{32}|[0-9a-f]{64})$")
PHI_SHAPED = [
    "MRN-55667788",
    "Pembertonwhistle-Agatha",
    "Quillfeather^Ottoline",
    "55667788",
    "19420317",
    "req-42.a_b",
    "00000000000000000000000055667788",  # a zero-padded record number at a UUID's length
    "0" * 64,
    "12345678-1234-1234-1234-123456789012",  # UUID syntax, digits only
    "",
    " " + "a" * 32,
    "a" * 32 + "\n",
    "a" * 31,
    "a" * 33,
    "a" * 63,
    "a" * 65,
    "g" * 32,
    "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
    "urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "3f2504e0-4f89-11d3-9a0c0305e82c3301",  # a hyphen missing
]


class TestAcceptCorrelationId:
    @pytest.mark.parametrize(
        ("supplied", "canonical"),
        [
            ("3f2504e04f8911d39a0c0305e82c3301", "3f2504e04f8911d39a0c0305e82c3301"),
            ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "3f2504e04f8911d39a0c0305e82c3301"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("AB" * 32, "ab" * 32),
        ],
    )
    def test_uuids_and_digests_are_kept_canonical(self, supplied: str, canonical: str) -> None:
        """A UUID (any case, hyphens or not) or a 32/64-hex digest is kept, lower case."""
        assert accept_correlation_id(supplied) == canonical

    @pytest.mark.parametrize("supplied", PHI_SHAPED)
    def test_anything_else_is_refused(self, supplied: str) -> None:
        """Text, short or padded numbers, other lengths and other UUID spellings are refused."""
        assert accept_correlation_id(supplied) is None

    def test_none_is_refused(self) -> None:
        """No value, no id."""
        assert accept_correlation_id(None) is None

    def test_ascii_bytes_are_read(self) -> None:
        """A raw Kafka header value is accepted like its text."""
        assert accept_correlation_id(b"3F2504E04F8911D39A0C0305E82C3301") == (
            "3f2504e04f8911d39a0c0305e82c3301"
        )

    def test_non_ascii_bytes_are_refused(self) -> None:
        """Bytes that are not ASCII are refused, not decoded with replacement characters."""
        assert accept_correlation_id(b"\xff" * 32) is None

    @given(st.uuids())
    def test_every_uuid_in_either_spelling_is_accepted(self, value: uuid.UUID) -> None:
        """Both spellings of a UUID give its hex form (unless that is digits only)."""
        expected = None if value.hex.isdigit() else value.hex
        assert accept_correlation_id(str(value)) == expected
        assert accept_correlation_id(str(value).upper()) == expected
        assert accept_correlation_id(value.hex) == expected

    @given(st.text(max_size=80))
    def test_accepted_values_are_canonical(self, value: str) -> None:
        """Whatever is supplied, an accepted id is canonical and fits every column."""
        accepted = accept_correlation_id(value)
        if accepted is not None:
            assert CANONICAL.fullmatch(accepted)
            assert len(accepted) <= MAX_CORRELATION_ID_LENGTH

    @given(st.text(alphabet=string.ascii_letters + string.digits + "-_.^ ", max_size=64))
    def test_text_with_a_non_hex_letter_is_never_accepted(self, value: str) -> None:
        """A value holding any letter beyond a-f (a name, an MRN prefix) is never kept."""
        if set(value.lower()) - set(string.hexdigits.lower() + "-"):
            assert accept_correlation_id(value) is None

    @given(st.text(alphabet=string.hexdigits, min_size=32, max_size=32))
    def test_canonical_form_is_idempotent(self, value: str) -> None:
        """Accepting an accepted id again gives it back unchanged."""
        accepted = accept_correlation_id(value)
        if accepted is not None:
            assert accept_correlation_id(accepted) == accepted


class TestGeneratedIds:
    def test_new_ids_are_canonical_and_distinct(self) -> None:
        """A fresh id is canonical, accepted by the rule, and not repeated."""
        ids = {new_correlation_id() for _ in range(200)}
        assert len(ids) == 200
        assert all(CANONICAL.fullmatch(i) and accept_correlation_id(i) == i for i in ids)

    def test_derived_ids_are_deterministic(self) -> None:
        """The same parts give the same id; other parts another."""
        one = derived_correlation_id("radstream.images.arrived", 0, 7)
        assert one == derived_correlation_id("radstream.images.arrived", 0, 7)
        assert one != derived_correlation_id("radstream.images.arrived", 0, 8)
        assert accept_correlation_id(one) == one

    def test_derivation_is_stable_across_releases(self) -> None:
        """A message position derives the id earlier releases derived (redeliveries agree)."""
        namespace = uuid.UUID("5f0c8a56-6c1e-4c8e-9a39-2b7f3d1e0c42")
        expected = uuid.uuid5(namespace, "t:1:2").hex
        assert derived_correlation_id("t", 1, 2) == expected

    @given(st.text(max_size=40), st.integers(min_value=0), st.integers(min_value=0))
    def test_derived_ids_are_always_accepted(self, topic: str, partition: int, offset: int) -> None:
        """Whatever the seed, a derived id passes the rule, so no reader replaces it again."""
        derived = derived_correlation_id(topic, partition, offset)
        assert accept_correlation_id(derived) == derived

    def test_digits_only_hex_is_given_a_letter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The one-in-millions all-digit draw is turned into an accepted id."""
        digits = uuid.UUID(hex="1234567890" * 3 + "12")
        monkeypatch.setattr(uuid, "uuid4", lambda: digits)
        fresh = new_correlation_id()
        assert fresh == "f" + digits.hex[1:]
        assert accept_correlation_id(fresh) == fresh


class TestHeaders:
    def test_first_header_is_read(self) -> None:
        """The first correlation header decides, as Kafka clients read headers."""
        headers = [
            ("other", b"x"),
            (CORRELATION_ID_HEADER, b"A" * 32),
            (CORRELATION_ID_HEADER, b"b" * 32),
        ]
        assert correlation_id_from_headers(headers) == "a" * 32

    @pytest.mark.parametrize("headers", [None, [], [("other", b"a" * 32)]])
    def test_missing_header_gives_none(self, headers: list[tuple[str, bytes]] | None) -> None:
        """Without a correlation header there is nothing to accept."""
        assert correlation_id_from_headers(headers) is None

    def test_refused_header_gives_none(self) -> None:
        """A PHI-shaped header is refused."""
        assert correlation_id_from_headers([(CORRELATION_ID_HEADER, b"MRN-55667788")]) is None

    def test_with_header_replaces_every_original(self) -> None:
        """The first correlation header is replaced in place, later ones are dropped."""
        cid = new_correlation_id()
        headers = [
            ("first", b"1"),
            (CORRELATION_ID_HEADER, b"MRN-55667788"),
            ("other", b"x"),
            (CORRELATION_ID_HEADER, b"Pembertonwhistle-Agatha"),
        ]
        assert with_correlation_header(headers, cid) == [
            ("first", b"1"),
            (CORRELATION_ID_HEADER, cid.encode()),
            ("other", b"x"),
        ]

    def test_with_header_appends_when_missing(self) -> None:
        """Headers without a correlation header gain one at the end."""
        cid = new_correlation_id()
        assert with_correlation_header([("other", b"x")], cid) == [
            ("other", b"x"),
            (CORRELATION_ID_HEADER, cid.encode()),
        ]
