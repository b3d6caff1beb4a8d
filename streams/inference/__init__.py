"""Inference stage logic: model registry, routing, preprocessing, runtime and micro-batching.

Pure except :mod:`streams.inference.registry` reading manifests and weights and
:mod:`streams.inference.runtime` creating ONNX Runtime sessions. No Kafka, SQL, HTTP,
metrics or logging here: the agent wraps these functions.
"""
