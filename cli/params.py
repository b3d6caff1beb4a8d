"""Option types and shared options of the ``radstream`` commands.

Values are checked while the command line is parsed, against the same rules the events and
the settings use (pydantic types from ``schemas/``), so a bad value is a usage error naming the
option — before any service is contacted. No message quotes a whole list of choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import click
from pydantic import TypeAdapter, ValidationError

from schemas.errors import ErrorCode
from schemas.events import Pseudonym, Stage

F = TypeVar("F", bound=Callable[..., Any])


class Validated(click.ParamType):
    """A value checked by a pydantic type (e.g. ``schemas.events.ModelId``).

    Args:
        kind: the type in pydantic's terms.
        name: what the value is, for the metavar and the message ("model id").
    """

    def __init__(self, kind: Any, name: str) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(kind)
        self.name = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The validated value; a usage error saying why (without the rule's regex) if not."""
        try:
            return self._adapter.validate_python(value)
        except ValidationError as exc:
            why = str(exc.errors(include_url=False, include_input=False)[0]["msg"])
            if "pattern" in why:
                why = "it holds characters or a form the contract does not allow"
            self.fail(f"{value!r} is not a valid {self.name}: {why}", param, ctx)


class ErrorCodeType(click.ParamType):
    """An :class:`~schemas.errors.ErrorCode`; a typo gets the closest codes as suggestions."""

    name = "code"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The code, upper-cased; a usage error with at most three suggestions if unknown."""
        if isinstance(value, ErrorCode):
            return value
        text = str(value).upper()
        try:
            return ErrorCode(text)
        except ValueError:
            close = difflib.get_close_matches(text, [c.value for c in ErrorCode], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else " (README, 'Error codes')"
            self.fail(f"{value!r} is not an error code{hint}", param, ctx)


class AwareTime(click.ParamType):
    """An ISO 8601 time; a time without an offset is taken as UTC."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The timezone-aware time; a usage error when it is not ISO 8601."""
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Stages have two spellings: the worker runs them by the names of ``app.ALL_STAGES``
# (``dicom-export``, ``results``: its consumer groups are named after them), and events, dead
# letters, logs and metrics name them by :class:`~schemas.events.Stage` (``dicom_export``,
# ``results_sink``). Both are kept (renaming either renames consumer groups or a contract's
# values); every option taking a stage accepts both. "-" and "_" are interchangeable anyway;
# these differ by more.
WORKER_STAGE_FOR: Final[Mapping[Stage, str]] = {Stage.RESULTS_SINK: "results"}


def spelling(name: str) -> str:
    """A name as options compare it: case, surrounding blanks, ``-`` and ``_`` do not matter."""
    return name.strip().lower().replace("_", "-")


def _by_spelling(choices: Sequence[str], aliases: Mapping[str, str]) -> dict[str, str]:
    """Each accepted spelling of a choice or alias -> the choice (choices win over aliases)."""
    return {spelling(alias): choice for alias, choice in aliases.items()} | {
        spelling(choice): choice for choice in choices
    }


class NameChoice(click.Choice[str]):
    """One of ``choices``, also spelt with ``_`` for ``-`` (or the reverse), or by an alias.

    ``--help`` shows the choices themselves.

    Args:
        choices: the canonical names (what the command receives).
        aliases: other names -> the choice they stand for.
    """

    def __init__(self, choices: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        super().__init__(choices)
        self._accepted = _by_spelling(choices, aliases or {})

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The canonical choice; click's usage error (listing the choices) for anything else."""
        found = self._accepted.get(spelling(str(value)))
        return found if found is not None else super().convert(value, param, ctx)


class CommaList(click.ParamType):
    """A comma-separated subset of ``choices`` (``validation,inference``), order kept.

    Like :class:`NameChoice`, each item may be spelt with ``_`` for ``-`` or by an alias.
    """

    name = "list"

    def __init__(self, choices: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        self.choices = tuple(choices)
        self._accepted = _by_spelling(self.choices, aliases or {})

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The chosen items; a usage error naming the unknown ones and the allowed ones."""
        if isinstance(value, tuple):
            return value
        given = [part.strip() for part in str(value).split(",") if part.strip()]
        unknown = [item for item in given if spelling(item) not in self._accepted]
        items = tuple(dict.fromkeys(self._accepted.get(spelling(item), item) for item in given))
        if unknown or not items:
            self.fail(
                f"{', '.join(map(repr, unknown)) or 'nothing'} given; choose from "
                f"{','.join(self.choices)}",
                param,
                ctx,
            )
        return items


class HttpUrl(click.ParamType):
    """An ``http://`` or ``https://`` URL with a host (a REST base URL such as Orthanc's)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The URL without a trailing slash; a usage error otherwise.

        The message does not quote the value: a URL may carry a user and password.
        """
        text = str(value).strip()
        try:
            parts = urlsplit(text)
            usable = parts.scheme in {"http", "https"} and bool(parts.hostname)
            _port = parts.port  # a port that is not a number raises here
        except ValueError:
            usable = False
        if not usable:
            self.fail("not an http(s) URL with a host (e.g. http://127.0.0.1:8042)", param, ctx)
        return text.rstrip("/")


JSON_HELP: Final = "Print one JSON document instead of a table."


def json_option(command: F) -> F:
    """The ``--json`` flag every listing command has."""
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(command)


def actor_option(action: F) -> F:
    """``--actor``: who changes something (dead letters, the model registry), for the audit."""
    return click.option(
        "--actor",
        required=True,
        type=Validated(Pseudonym, "actor id"),
        help="Your pseudonymous id, recorded in the audit trail (never a name).",
    )(action)


def seconds_option(
    name: str, *, minimum: float, help_text: str, default: float | None = None
) -> Callable[[F], F]:
    """A duration in seconds (``--timeout``, ``--interval``, ``--every``), at least ``minimum``."""
    return click.option(
        name,
        type=click.FloatRange(min=minimum),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help=help_text,
    )
