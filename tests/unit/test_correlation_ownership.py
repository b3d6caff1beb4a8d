"""One owner of the correlation id: no other module makes, checks or names one its own way.

``schemas/correlation.py`` owns the format, generation and acceptance of correlation ids (issue
13: five owners and four regexes had drifted apart, and one of them let ``MRN-55667788`` into
the audit log). This test reads every module of ours with ``ast`` and fails when code outside the
owner that builds a correlation id (a name, argument or header containing "correlation") calls
``re``, ``uuid``, ``hashlib`` or ``secrets``, reads a UUID's ``.hex``, declares a pydantic
``pattern``, or spells the HTTP header's name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "schemas" / "correlation.py"
_SKIPPED_PARTS = {".venv", "tests", ".state", "migrations", "__pycache__", ".git"}
_FORBIDDEN_MODULES = {"re", "uuid", "hashlib", "secrets", "random", "hmac"}
_CORRELATION = re.compile("correlation", re.IGNORECASE)
_HTTP_HEADER = "x-correlation-id"


def our_modules() -> list[Path]:
    """Every Python module of radstream (tests, migrations and the virtualenv aside)."""
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not _SKIPPED_PARTS.intersection(path.relative_to(ROOT).parts) and path != OWNER
    )


def _called_module(node: ast.Call) -> str | None:
    """``re`` for ``re.compile(...)``, ``uuid`` for ``uuid.uuid4()``; None otherwise."""
    func = node.func
    while isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name):
            return func.value.id
        func = func.value
    return None


def _own_rule_in(node: ast.AST, helpers: dict[str, ast.AST], seen: set[str]) -> Iterator[str]:
    """What in ``node`` makes or checks an id by itself instead of asking the owner.

    A call to a function of the same module (``safe_token(corr)``) is followed once, so a
    helper with a neutral name cannot hide the rule.
    """
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call) and _called_module(inner) in _FORBIDDEN_MODULES:
            yield f"calls {_called_module(inner)}"
        elif isinstance(inner, ast.Attribute) and inner.attr == "hex":
            yield "reads a UUID's .hex"
        elif isinstance(inner, ast.keyword) and inner.arg in {"pattern", "regex"}:
            yield "declares a pattern"
        elif (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id in helpers
            and inner.func.id not in seen
        ):
            seen.add(inner.func.id)
            yield from (
                f"via {inner.func.id}(): {what}"
                for what in _own_rule_in(helpers[inner.func.id], helpers, seen)
            )


def _names_correlation(node: ast.AST) -> bool:
    """Whether ``node`` is a definition, target, argument or header about a correlation id."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return bool(_CORRELATION.search(node.name))
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(_CORRELATION.search(ast.unparse(t)) for t in targets)
    if isinstance(node, ast.keyword):
        return node.arg is not None and bool(_CORRELATION.search(node.arg))
    if isinstance(node, ast.Tuple):
        return any(
            isinstance(e, ast.Name) and _CORRELATION.search(e.id) and "HEADER" in e.id
            for e in node.elts
        )
    return False


def violations(source: str) -> list[str]:
    """Every place in ``source`` that has a correlation-id rule of its own."""
    found: list[str] = []
    tree = ast.parse(source)
    helpers: dict[str, ast.AST] = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for node in ast.walk(tree):
        if _names_correlation(node):
            seen = (
                {node.name} if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else set()
            )
            found += [
                f"line {getattr(node, 'lineno', '?')}: {what}"
                for what in _own_rule_in(node, helpers, seen)
            ]
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if text.lower() == _HTTP_HEADER:
                found.append(f"line {node.lineno}: spells the HTTP header's name")
    return found


class TestOwnership:
    @pytest.mark.parametrize("path", our_modules(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_no_module_has_its_own_rule(self, path: Path) -> None:
        """Outside schemas/correlation.py nobody generates, validates or names an id alone."""
        assert violations(path.read_text()) == []

    def test_the_owner_is_where_the_rule_lives(self) -> None:
        """The owner itself is what the check would flag: the rule has exactly one home."""
        assert violations(OWNER.read_text())


class TestTheCheckFindsTheOldCopies:
    """Each copy of the rule issue 13 found, in its old form, is caught."""

    @pytest.mark.parametrize(
        "snippet",
        [
            # gateway/middleware.py
            '_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")',
            'CORRELATION_HEADER = "X-Correlation-ID"',
            'headers.append((b"x-correlation-id", cid.encode()))',
            # observability/logging.py
            "def new_correlation_id() -> str:\n    return uuid.uuid4().hex",
            # streams/pipeline.py
            "def correlation_id(self):\n    return uuid.uuid5(NS, f'{self.topic}').hex",
            # app.py and bench/probe.py
            "headers = ((CORRELATION_ID_HEADER, event.event_id.hex.encode()),)",
            # bench/work_limit.py
            "InferenceRequest(event=v, correlation_id=event.event_id.hex, pixels=p)",
            # a pydantic field with a pattern of its own
            'correlation_id: str = Field(pattern=r"^[a-z]+$")',
            # a digest of the supplied value (streams/audit/records.py, through a helper)
            "correlation = 'sha256:' + hashlib.sha256(value.encode()).hexdigest()[:16]",
            "def safe_token(v):\n    return hashlib.sha256(v).hexdigest()\n"
            "draft = Draft(correlation_id=safe_token(corr))",
        ],
    )
    def test_old_copy_is_a_violation(self, snippet: str) -> None:
        """The snippet is reported."""
        assert violations(snippet)

    @pytest.mark.parametrize(
        "snippet",
        [
            "correlation_id = correlation_id_from_headers(headers) or new_correlation_id()",
            "headers = with_correlation_header((), correlation_id_of(request.scope))",
            "def correlation_id(self):\n    return accept_correlation_id(self.value)",
            'state["correlation_id"] = correlation_id',
        ],
    )
    def test_calling_the_owner_is_fine(self, snippet: str) -> None:
        """Code that asks the owner is not reported."""
        assert violations(snippet) == []
