"""``radstream models``: the model registry and whether each model is served."""

from __future__ import annotations

import click

import app
from cli.context import Command, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit_json, emit_table
from cli.params import json_option
from schemas.errors import ErrorCode


@click.command("models", cls=Command)
@json_option
@pass_invocation
def command(invocation: Invocation, as_json: bool) -> None:
    """List the model registry and each model's status.

    Name, version, runtime, default, status and weights digest. Every weights file is checked
    against the SHA-256 its manifest declares; a model whose weights do not match is listed as
    refused (MODEL_CHECKSUM_MISMATCH) and never served.
    """
    settings = invocation.start()
    rows = app.load_model_registry(settings).list()
    if not rows:
        raise CommandError(
            ErrorCode.CHECK_FAILED,
            "the model registry holds no model",
            advice="Check RADSTREAM_INFERENCE__MODEL_REGISTRY_DIR (docs/inference.md)",
        )
    if as_json:
        emit_json([row.model_dump(mode="json") for row in rows])
        return
    emit_table(
        ["name", "version", "runtime", "default", "status", "digest"],
        [
            (
                row.name,
                row.version,
                row.runtime or "-",
                "yes" if row.default else "",
                row.status.value + (f" ({row.error_code})" if row.error_code else ""),
                (row.weights_sha256 or "-")[:16],
            )
            for row in rows
        ],
    )
