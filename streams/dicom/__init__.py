"""DICOM in and out, the pure part: what a received instance is, result reports, statuses.

Bytes and models in, models and datasets out: no network, no files, no Kafka (the receiver,
the store and the sender live in ``streams/dicom_io/``). Guarded by the layering test.
"""
