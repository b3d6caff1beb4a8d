"""DICOM in and out, the I/O part: the instance store, the shared ingest path, the C-STORE
receiver (SCP) and the result sender (SCU). The pure part is ``streams/dicom/``."""
