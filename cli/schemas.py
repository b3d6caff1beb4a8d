"""``radstream schemas export|check``: the committed contract files (JSON Schema, AsyncAPI,
OpenAPI)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table
from cli.params import json_option
from gateway.export_openapi import OPENAPI_PATH, openapi_document, render
from schemas.errors import ErrorCode
from schemas.settings import PROJECT_ROOT
from streams.topic_contracts import contract_files, stale_files


def all_contract_files() -> dict[Path, str]:
    """Every committed contract file and the content this release generates for it."""
    return {**contract_files(), OPENAPI_PATH: render(openapi_document())}


@click.group("schemas", cls=Group)
def command() -> None:
    """Regenerate or check the committed contract files.

    The files are schemas/jsonschema/*.json (one JSON Schema per event), schemas/asyncapi.json
    (every topic) and gateway/openapi.json (the HTTP API).
    """


@command.command("export")
@pass_invocation
def export_command(invocation: Invocation) -> None:
    """Write the contract files from the current models (then review and commit them)."""
    invocation.ensure_logging()
    files = all_contract_files()
    changed = stale_files(files)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    emit(f"wrote {len(files)} contract files ({len(changed)} changed)")


@command.command("check")
@json_option
@pass_invocation
def check_command(invocation: Invocation, as_json: bool) -> None:
    """Check that the committed contract files match the models; exit 1 listing stale ones."""
    invocation.ensure_logging()
    stale = [str(path.relative_to(PROJECT_ROOT)) for path in stale_files(all_contract_files())]
    if as_json:
        emit_json({"stale": stale})
    elif stale:
        emit_table(["stale file"], [(path,) for path in stale])
    if stale:
        raise CommandError(
            ErrorCode.CHECK_FAILED,
            f"{len(stale)} contract file(s) differ from the models",
            advice="Run 'radstream schemas export', review the change and commit it",
        )
