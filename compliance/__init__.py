"""Compliance evidence: requirement catalogue, traceability matrix, SOUP list, SBOM, report.

Nothing here touches Kafka or PostgreSQL: the command line hands in what needs I/O (the audit
verification reports), so every piece is testable with plain files.
"""
