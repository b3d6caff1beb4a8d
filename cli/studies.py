"""``radstream studies show UID``: a study's status, series, study results and urgent findings."""

from __future__ import annotations

import asyncio
import re

import click

import app
from cli.context import Group, Invocation, pass_invocation
from cli.errors import CommandError
from cli.output import emit, emit_json, emit_table
from cli.params import json_option
from schemas.errors import ErrorCode
from schemas.events import join_model_id

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _study_uid(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    # The value is not repeated in the message: a mistyped argument could be a patient's name.
    if len(value) > 64 or not _UID.fullmatch(value):
        raise click.BadParameter("not a DICOM UID (digits and dots, at most 64 characters)")
    return value


@click.group("studies", cls=Group)
def command() -> None:
    """Show the status of a study (completeness, study results, urgent findings)."""


@command.command("show")
@click.argument("study_uid", callback=_study_uid)
@json_option
@pass_invocation
def show_command(invocation: Invocation, study_uid: str, as_json: bool) -> None:
    """Print a study's status, series, lifecycle counts, study results and urgent findings.

    Status is receiving, complete, analysed or failed (docs/studies.md). Exits 4 when no
    instance of the study has arrived.
    """
    settings = invocation.start()
    view = asyncio.run(app.study_view(settings, study_uid))
    if view is None:
        raise CommandError(
            ErrorCode.STUDY_NOT_FOUND,
            "no instance of this study has arrived",
            advice="Check the StudyInstanceUID; a study is known once the studies stage saw it",
        )
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    completed = (
        f"{view.completed_by.value} at {view.completed_at:%Y-%m-%d %H:%M:%S}Z"
        if view.completed_by and view.completed_at
        else "-"
    )
    emit_table(
        ["study", "status", "priority", "generation", "instances", "arrivals", "completed by"],
        [
            (
                view.study_instance_uid,
                view.status.value,
                view.priority.value,
                view.generation,
                view.instance_count,
                view.arrivals,
                completed,
            )
        ],
    )
    emit()
    emit_table(
        ["series", "modality", "instances", "expected", "completed by"],
        [
            (
                s.series_instance_uid,
                s.modality or "-",
                s.instance_count,
                s.expected_instances or "-",
                s.completed_by.value if s.completed_by else "-",
            )
            for s in view.series
        ],
    )
    emit()
    emit_table(["lifecycle state", "images"], sorted(view.lifecycle.items()))
    if view.results:
        emit()
        emit_table(
            ["model", "generation", "finding", "max score", "positive", "analysed", "failed"],
            [
                (
                    join_model_id(r.model.name, r.model.version),
                    r.generation,
                    r.finding,
                    f"{r.max_score:.3f}",
                    r.positive_count,
                    f"{r.analysed_count}/{r.instance_count}",
                    len(r.failures) + r.failures_truncated,
                )
                for r in view.results
            ],
        )
    if view.urgent_findings:
        emit()
        emit_table(
            ["urgent finding", "model", "score", "rule", "raised", "acknowledged by"],
            [
                (
                    f.finding,
                    join_model_id(f.model_name, f.model_version),
                    f"{f.score:.3f}",
                    f.rule,
                    f"{f.raised_at:%Y-%m-%d %H:%M:%S}Z",
                    f.acknowledged_by or "NOT ACKNOWLEDGED",
                )
                for f in view.urgent_findings
            ],
        )
