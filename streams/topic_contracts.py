"""The committed contract files of radstream's topics: JSON Schemas and one AsyncAPI document.

Generated from the topic catalogue (:data:`streams.topics.TOPIC_SPECS`) and the event models;
``radstream schemas export`` writes them and ``radstream schemas check`` (and a unit test)
compares them with the committed files (:func:`stale_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from schemas.contracts import (
    ASYNCAPI_FILE,
    JSONSCHEMA_DIR,
    ChannelContract,
    asyncapi_document,
    jsonschema_files,
    render,
)
from streams.topics import TOPIC_SPECS, TopicNames, value_models

# The documents describe a local deployment with the default prefix, whatever runs them.
DOCUMENTED_PREFIX: Final = "radstream."
DOCUMENTED_SERVER: Final = "127.0.0.1:9092"
CONTRACT_VERSION: Final = "1.0.0"


def contract_files() -> dict[Path, str]:
    """Every generated contract file and its content (JSON Schemas + AsyncAPI)."""
    models = value_models()
    files = {
        JSONSCHEMA_DIR / name: text
        for name, text in jsonschema_files(
            sorted(set(models.values()), key=lambda m: m.__name__)
        ).items()
    }
    names = TopicNames(DOCUMENTED_PREFIX)
    channels = [
        ChannelContract(
            channel_id=key.name.lower(),
            address=names[key],
            model=models[key],
            description=spec.description,
            key=spec.message_key,
        )
        for key, spec in TOPIC_SPECS.items()
    ]
    document = asyncapi_document(
        channels, version=CONTRACT_VERSION, servers={"local": DOCUMENTED_SERVER}
    )
    files[ASYNCAPI_FILE] = render(document)
    return files


def stale_files(files: dict[Path, str]) -> list[Path]:
    """The files whose committed content differs from ``files`` (or that are missing)."""
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]
