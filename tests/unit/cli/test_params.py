"""Option types: values are checked while parsing, against the contracts' own rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from cli.params import AwareTime, CommaList, ErrorCodeType, HttpUrl, NameChoice, Validated
from schemas.errors import ErrorCode
from schemas.events import ModelId


def convert(kind: click.ParamType, value: str) -> object:
    """``value`` through ``kind``, as click converts an option."""
    return kind.convert(value, None, None)


class TestValidated:
    def test_accepts_what_the_contract_accepts(self) -> None:
        """A model id the event contract accepts passes unchanged."""
        assert convert(Validated(ModelId, "model id"), "lesion-detector@1.1.0") == (
            "lesion-detector@1.1.0"
        )

    def test_refuses_without_quoting_the_regex(self) -> None:
        """A refusal says what is wrong in words, not as a pattern."""
        with pytest.raises(click.BadParameter, match="not a valid model id") as refused:
            convert(Validated(ModelId, "model id"), "BAD MODEL")
        assert "^[a-z0-9]" not in str(refused.value)


class TestErrorCodeType:
    def test_case_does_not_matter(self) -> None:
        """``event_malformed`` is EVENT_MALFORMED."""
        assert convert(ErrorCodeType(), "event_malformed") is ErrorCode.EVENT_MALFORMED

    def test_unknown_code_without_a_neighbour_points_at_the_readme(self) -> None:
        """Nothing close: the README's table is named, not the catalogue printed."""
        with pytest.raises(click.BadParameter, match="README") as refused:
            convert(ErrorCodeType(), "zzzz")
        assert "EVENT_MALFORMED" not in str(refused.value)


class TestAwareTime:
    def test_offset_is_kept(self) -> None:
        """A time with an offset keeps it."""
        parsed = convert(AwareTime(), "2026-03-01T12:00:00+02:00")
        assert isinstance(parsed, datetime)
        assert parsed.utcoffset() == timedelta(hours=2)

    def test_naive_time_is_utc(self) -> None:
        """A time without offset is read as UTC."""
        assert convert(AwareTime(), "2026-03-01T12:00:00") == datetime(2026, 3, 1, 12, tzinfo=UTC)


class TestCommaList:
    def test_subset_in_order_without_duplicates(self) -> None:
        """``inference, validation,inference`` is inference then validation."""
        kind = CommaList(["validation", "inference", "results"])
        assert convert(kind, "inference, validation,inference") == ("inference", "validation")

    @pytest.mark.parametrize("value", ["valdation", " , "])
    def test_unknown_or_empty_is_refused(self, value: str) -> None:
        """A typo, or nothing at all, is a usage error naming the choices."""
        with pytest.raises(click.BadParameter, match="choose from validation,inference"):
            convert(CommaList(["validation", "inference"]), value)


class TestHttpUrl:
    def test_trailing_slash_is_dropped(self) -> None:
        """``http://h:8042/`` is the base URL ``http://h:8042``."""
        assert convert(HttpUrl(), "http://h:8042/") == "http://h:8042"

    @pytest.mark.parametrize(
        "value", ["file:///etc", "http://", "h:8042", "http://h:port", "http://[::1"]
    )
    def test_not_http_with_a_host_is_refused_without_quoting_it(self, value: str) -> None:
        """Another scheme, no host or a bad port: refused; the value (it may hold a password)
        is not repeated."""
        with pytest.raises(click.BadParameter, match=r"not an http\(s\) URL") as refused:
            convert(HttpUrl(), value)
        assert repr(value) not in str(refused.value)


class TestStageSpellings:
    """Stages are spelt two ways (worker: dicom-export, results; dead letters: dicom_export,
    results_sink); every stage option accepts both."""

    def test_choice_takes_either_spelling_and_returns_the_canonical_one(self) -> None:
        """``dicom-export`` and ``results`` are the dead letters' dicom_export and results_sink."""
        kind = NameChoice(
            ["dicom_export", "results_sink", "validation"], {"results": "results_sink"}
        )
        assert [convert(kind, v) for v in ("dicom-export", "Results", "results-sink")] == [
            "dicom_export",
            "results_sink",
            "results_sink",
        ]

    def test_choice_refuses_an_unknown_name_listing_the_choices(self) -> None:
        """Anything else is click's usage error, naming the valid choices."""
        with pytest.raises(click.BadParameter, match="'dicom_export', 'validation'"):
            convert(NameChoice(["dicom_export", "validation"]), "export")

    def test_list_takes_either_spelling_once(self) -> None:
        """``dicom_export,results_sink,dicom-export`` runs dicom-export and results, once each."""
        kind = CommaList(["results", "dicom-export"], {"results_sink": "results"})
        assert convert(kind, "dicom_export,results_sink,dicom-export") == (
            "dicom-export",
            "results",
        )
