"""Stage handlers: the per-batch orchestration around each stage's pure logic.

Each handler turns consumed messages into messages to produce and never raises for a bad
message (the runner in :mod:`streams.pipeline` dead-letters the batch if one does anyway).
"""
