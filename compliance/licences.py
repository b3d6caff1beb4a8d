"""Licences: SPDX expressions from package metadata, and the policy that judges them.

The policy (``policy`` in ``compliance/soup.yaml``) lists permissive and copyleft SPDX ids.
An expression is judged by its best alternative (``OR``) and its worst part (``AND``); an id
the policy does not list is unknown and fails like copyleft until someone classifies it. A
copyleft component passes only through a recorded exception that names it, its licence and the
reason; the check prints every exception it applied.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from enum import IntEnum

_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+:-]+)")
_OPERATORS = {"AND", "OR", "WITH"}


class LicenceError(ValueError):
    """A licence expression that is not valid SPDX syntax."""


class LicenceClass(IntEnum):
    """How freely radstream may ship a component, best first."""

    PERMISSIVE = 0
    COPYLEFT = 1
    UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class LicencePolicy:
    """Which SPDX ids are permissive or copyleft, and how metadata spells licences."""

    permissive: frozenset[str]
    copyleft: tuple[str, ...]  # fnmatch patterns such as "GPL-*"
    aliases: Mapping[str, str]
    classifiers: Mapping[str, str]

    def classify_id(self, licence_id: str) -> LicenceClass:
        """One SPDX id (or LicenseRef-) as permissive, copyleft or unknown."""
        if licence_id in self.permissive:
            return LicenceClass.PERMISSIVE
        if any(fnmatch.fnmatchcase(licence_id, pattern) for pattern in self.copyleft):
            return LicenceClass.COPYLEFT
        return LicenceClass.UNKNOWN

    def classify(self, expression: str) -> LicenceClass:
        """A whole expression: OR takes the best alternative, AND the worst part."""
        return _evaluate(_parse(expression), self.classify_id)

    def normalise(self, text: str) -> str | None:
        """``text`` as an SPDX expression, if it is one (known ids) or a known alias."""
        text = " ".join(text.split())
        if text in self.aliases:
            return self.aliases[text]
        try:
            ids = _ids(_parse(text))
        except LicenceError:
            return None
        known = all(self.classify_id(i) is not LicenceClass.UNKNOWN for i in ids)
        return text if known else None

    def from_metadata(self, metadata: Message) -> str | None:
        """The licence a distribution declares: License-Expression, License, or classifiers.

        None when nothing in the metadata maps to SPDX without guessing (e.g. the classifier
        "BSD License", which does not say which BSD): the SOUP data must then say.
        """
        expression = metadata.get("License-Expression")
        if expression:
            return " ".join(str(expression).split())
        licence = metadata.get("License")
        if licence and len(str(licence)) < 200:
            normalised = self.normalise(str(licence))
            if normalised:
                return normalised
        mapped = sorted(
            {
                self.classifiers[classifier]
                for classifier in metadata.get_all("Classifier") or []
                if classifier in self.classifiers
            }
        )
        return " AND ".join(mapped) if mapped else None


@dataclass(frozen=True, slots=True)
class LicenceException:
    """A reviewed copyleft (or unclassified) component that is allowed, and why."""

    component: str
    licence: str
    reason: str


@dataclass(frozen=True, slots=True)
class LicenceFinding:
    """The check's word on one component of the runtime closure."""

    component: str
    licence: str | None
    verdict: LicenceClass
    exception: LicenceException | None = None

    @property
    def fails(self) -> bool:
        """Copyleft or unknown, and no exception names this component with this licence."""
        return self.verdict is not LicenceClass.PERMISSIVE and self.exception is None

    def describe(self) -> str:
        """One line for the check's output."""
        licence = self.licence or "no licence found"
        if self.verdict is LicenceClass.PERMISSIVE:
            return f"{self.component}: {licence}"
        if self.exception is not None:
            return f"{self.component}: {licence} — allowed by exception: {self.exception.reason}"
        what = "copyleft" if self.verdict is LicenceClass.COPYLEFT else "unclassified licence"
        return f"{self.component}: {licence} — {what} in the runtime closure"


def judge(
    policy: LicencePolicy,
    component: str,
    licence: str | None,
    exceptions: Sequence[LicenceException],
) -> LicenceFinding:
    """Judge one component; an exception applies only to the exact component and licence."""
    try:
        verdict = policy.classify(licence) if licence else LicenceClass.UNKNOWN
    except LicenceError:
        verdict = LicenceClass.UNKNOWN
    exception = next(
        (e for e in exceptions if e.component == component and e.licence == licence), None
    )
    if verdict is LicenceClass.PERMISSIVE:
        exception = None
    return LicenceFinding(component, licence, verdict, exception)


# ---------------------------------------------------------------- SPDX expressions
# expression := and ("OR" and)* ; and := with ("AND" with)* ; with := atom ("WITH" id)?
# atom := id | "(" expression ")"


@dataclass(frozen=True, slots=True)
class _Id:
    name: str


@dataclass(frozen=True, slots=True)
class _Op:
    kind: str  # "and" | "or"
    left: _Id | _Op
    right: _Id | _Op


_Node = _Id | _Op


def _parse(expression: str) -> _Node:
    tokens = _tokens(expression)
    node, rest = _parse_or(tokens)
    if rest:
        raise LicenceError(f"unexpected {rest[0]!r} in licence expression {expression!r}")
    return node


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise LicenceError(f"licence expression {expression!r} is not SPDX syntax")
        tokens.append(match.group(1))
        position = match.end()
    if not tokens:
        raise LicenceError("empty licence expression")
    return tokens


def _parse_or(tokens: list[str]) -> tuple[_Node, list[str]]:
    return _parse_binary(tokens, "or", _parse_and)


def _parse_and(tokens: list[str]) -> tuple[_Node, list[str]]:
    return _parse_binary(tokens, "and", _parse_with)


def _parse_binary(
    tokens: list[str], operator: str, operand: Callable[[list[str]], tuple[_Node, list[str]]]
) -> tuple[_Node, list[str]]:
    """``operand (operator operand)*``, folded to the left."""
    left, tokens = operand(tokens)
    while tokens and tokens[0].lower() == operator:
        right, tokens = operand(tokens[1:])
        left = _Op(operator, left, right)
    return left, tokens


def _parse_with(tokens: list[str]) -> tuple[_Node, list[str]]:
    node, tokens = _parse_atom(tokens)
    if tokens and tokens[0].upper() == "WITH":
        if len(tokens) < 2 or tokens[1] in ("(", ")") or tokens[1].upper() in _OPERATORS:
            raise LicenceError("WITH must name an exception")
        tokens = tokens[2:]  # an exception narrows the licence; the licence is what we judge
    return node, tokens


def _parse_atom(tokens: list[str]) -> tuple[_Node, list[str]]:
    if not tokens:
        raise LicenceError("licence expression ends too early")
    head, rest = tokens[0], tokens[1:]
    if head == "(":
        node, rest = _parse_or(rest)
        if not rest or rest[0] != ")":
            raise LicenceError("unbalanced parenthesis in licence expression")
        return node, rest[1:]
    if head == ")" or head.upper() in _OPERATORS:
        raise LicenceError(f"expected a licence id, found {head!r}")
    return _Id(head.removesuffix("+")), rest


def _evaluate(node: _Node, classify_id: Callable[[str], LicenceClass]) -> LicenceClass:
    if isinstance(node, _Id):
        return classify_id(node.name)
    pair = (_evaluate(node.left, classify_id), _evaluate(node.right, classify_id))
    return min(pair) if node.kind == "or" else max(pair)


def _ids(node: _Node) -> list[str]:
    if isinstance(node, _Id):
        return [node.name]
    return _ids(node.left) + _ids(node.right)
