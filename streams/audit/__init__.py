"""The tamper-evident audit trail: records, hash chains, signed checkpoints and verification.

Pure logic (no Kafka, SQL or logging): ``records`` builds drafts from events, ``chain`` links
them, ``checkpoints`` signs chain heads, ``verify`` checks a stored log. ``files`` is the one
explicit file reader/writer (signing key, checkpoint file). The I/O around this core (the Kafka
agent, the topic reader, the table writer) is the ``io`` subpackage.
"""
