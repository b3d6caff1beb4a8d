"""The HTTP API (FastAPI): a gateway onto the same pipeline, never a second one."""
