"""Licence expressions, metadata and the policy: copyleft fails unless an exception names it."""

from __future__ import annotations

from email.message import Message

import pytest

from compliance.licences import LicenceClass, LicenceError, LicenceException, judge
from compliance.soup import SoupData

pytestmark = pytest.mark.requirement("RS-CMP-03")

POLICY = SoupData.load().licence_policy()


def metadata(**headers: str | list[str]) -> Message:
    message = Message()
    for key, value in headers.items():
        for item in value if isinstance(value, list) else [value]:
            message[key.replace("_", "-")] = item
    return message


class TestClassify:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("MIT", LicenceClass.PERMISSIVE),
            ("Apache-2.0 OR BSD-3-Clause", LicenceClass.PERMISSIVE),
            ("MIT OR GPL-3.0-only", LicenceClass.PERMISSIVE),
            ("MIT AND GPL-3.0-only", LicenceClass.COPYLEFT),
            ("(MIT OR GPL-2.0-or-later) AND BSD-3-Clause", LicenceClass.PERMISSIVE),
            ("GPL-2.0-only WITH Classpath-exception-2.0", LicenceClass.COPYLEFT),
            ("LGPL-2.1-or-later", LicenceClass.COPYLEFT),
            ("MPL-2.0", LicenceClass.COPYLEFT),
            ("AGPL-3.0-only", LicenceClass.COPYLEFT),
            ("GPL-2.0+", LicenceClass.COPYLEFT),
            ("Weird-1.0", LicenceClass.UNKNOWN),
            ("MIT AND Weird-1.0", LicenceClass.UNKNOWN),
            ("MIT OR Weird-1.0", LicenceClass.PERMISSIVE),
        ],
    )
    def test_best_alternative_worst_part(self, expression: str, expected: LicenceClass) -> None:
        """OR takes the most permissive option, AND the least."""
        assert POLICY.classify(expression) is expected

    @pytest.mark.parametrize(
        "expression", ["", "MIT AND", "(MIT", "MIT WITH", "AND MIT", "MIT )", "M!T"]
    )
    def test_bad_syntax_is_an_error(self, expression: str) -> None:
        """Malformed expressions raise instead of passing."""
        with pytest.raises(LicenceError):
            POLICY.classify(expression)


class TestMetadata:
    def test_license_expression_wins(self) -> None:
        """PEP 639's License-Expression is taken as written."""
        assert POLICY.from_metadata(metadata(License_Expression="MIT  OR  Apache-2.0")) == (
            "MIT OR Apache-2.0"
        )

    def test_license_field_as_spdx_or_alias(self) -> None:
        """A License field with SPDX ids or a known alias is used; other text is not."""
        assert POLICY.from_metadata(metadata(License="BSD-3-Clause")) == "BSD-3-Clause"
        assert POLICY.from_metadata(metadata(License="Apache 2.0")) == "Apache-2.0"
        assert POLICY.from_metadata(metadata(License="Copyright (c) someone")) is None

    def test_unambiguous_classifiers_only(self) -> None:
        """'MIT License' maps; 'BSD License' (which BSD?) does not."""
        mit = "License :: OSI Approved :: MIT License"
        bsd = "License :: OSI Approved :: BSD License"
        assert POLICY.from_metadata(metadata(Classifier=[mit, bsd])) == "MIT"
        assert POLICY.from_metadata(metadata(Classifier=[bsd])) is None


class TestJudge:
    EXCEPTION = LicenceException("libx", "GPL-3.0-only", "reviewed")

    def test_copyleft_without_exception_fails(self) -> None:
        """GPL in the runtime closure fails the check."""
        finding = judge(POLICY, "liby", "GPL-3.0-only", [self.EXCEPTION])
        assert finding.fails
        assert finding.describe() == "liby: GPL-3.0-only — copyleft in the runtime closure"

    def test_exception_applies_to_that_component_and_licence_only(self) -> None:
        """A licence change of an excepted component fails again until reviewed."""
        allowed = judge(POLICY, "libx", "GPL-3.0-only", [self.EXCEPTION])
        assert not allowed.fails
        assert "allowed by exception: reviewed" in allowed.describe()
        assert judge(POLICY, "libx", "AGPL-3.0-only", [self.EXCEPTION]).fails

    def test_unknown_or_missing_licence_fails(self) -> None:
        """No licence, or one the policy does not know, is not waved through."""
        assert "no licence found" in judge(POLICY, "libz", None, []).describe()
        assert judge(POLICY, "libz", None, []).fails
        assert judge(POLICY, "libz", "M!T", []).fails
        assert "unclassified" in judge(POLICY, "libz", "Weird-1.0", []).describe()

    def test_permissive_passes_and_ignores_exceptions(self) -> None:
        """A permissive licence needs no exception; one recorded anyway is not applied."""
        finding = judge(POLICY, "libx", "MIT", [LicenceException("libx", "MIT", "needless")])
        assert not finding.fails
        assert finding.exception is None
        assert finding.describe() == "libx: MIT"
