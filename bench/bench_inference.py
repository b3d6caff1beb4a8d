"""Benchmark the inference stage: images per second and latency versus batch size.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/bench_inference.py [--images 256] [--rounds 5]

Images: synthetic CT phantoms (96x96 to 256x256 HU, from the reference model's generator) plus
pydicom's bundled CT_small.dcm (128x128). For each batch size (1, 8, 32) the same images go
through ``infer_batch`` (routing, preprocessing, one ONNX Runtime call per batch, result
events) with the default reference model on the CPU provider and one intra-op thread, as the
worker runs it. Prints a table and writes ``bench/results/inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime
import pydicom
from pydicom.data import get_testdata_file

from ops.reference_model.phantoms import generate_phantoms
from schemas.events import ImageFormat, ImageGeometry, ImageValidated
from schemas.settings import InferenceSettings
from streams.inference.batching import InferenceRequest, infer_batch
from streams.inference.preprocessing import preprocess
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules

BATCH_SIZES = (1, 8, 32)
RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sample_images(count: int) -> list[np.ndarray]:
    """``count`` images in HU: CT_small.dcm first, then phantoms (fixed seed)."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct_small = dataset.pixel_array.astype(np.float32) * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept
    )
    return [ct_small] + [p.pixels for p in generate_phantoms(4242, count - 1)]


def request_for(pixels: np.ndarray, index: int) -> InferenceRequest:
    """A validated-image request for one image (no patient data)."""
    event = ImageValidated(
        event_id=f"00000000-0000-4000-8000-{index:012d}",
        occurred_at=datetime.now(UTC),
        source="bench",
        image_uri=f"file:///bench/{index}.dcm",
        sha256="0" * 64,
        size_bytes=int(pixels.nbytes),
        modality="CT",
        geometry=ImageGeometry(
            format=ImageFormat.DICOM, width=pixels.shape[1], height=pixels.shape[0], dtype="int16"
        ),
    )
    return InferenceRequest(event, f"bench-{index}", pixels)


def measure(
    requests: list[InferenceRequest],
    registry: ModelRegistry,
    rules: RoutingRules,
    batch_size: int,
    rounds: int,
) -> dict[str, float]:
    """Run every request in batches of ``batch_size``, ``rounds`` times; summarise the timings."""
    throughputs, batch_latencies = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, len(requests), batch_size):
            batch_started = time.perf_counter()
            outcomes = infer_batch(requests[start : start + batch_size], registry, rules)
            batch_latencies.append(time.perf_counter() - batch_started)
            if not all(outcome.ok for outcome in outcomes):
                raise SystemExit("benchmark batch produced failures")
        throughputs.append(len(requests) / (time.perf_counter() - started))
    latencies = sorted(batch_latencies)
    throughput = statistics.median(throughputs)
    return {
        "batch_size": batch_size,
        "images_per_second": round(throughput, 1),
        # The fastest round is the least disturbed by other processes on a shared machine.
        "images_per_second_best_round": round(max(throughputs), 1),
        "ms_per_image": round(1000 / throughput, 3),
        "batch_latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 3),
        "batch_latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95) - 1], 3),
    }


def runtime_only(registry: ModelRegistry, images: list[np.ndarray], batch_size: int) -> float:
    """Images per second of the ONNX Runtime call alone (already preprocessed input)."""
    model = registry.resolve("lesion-detector")
    runner = model.require_runner()
    tensors = np.stack([preprocess(image, model.manifest.input) for image in images])
    started = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        runner.run_batch(tensors[start : start + batch_size])
    return round(len(tensors) / (time.perf_counter() - started), 1)


def main() -> None:
    """Benchmark, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_before = os.getloadavg()
    settings = InferenceSettings()
    registry = ModelRegistry.load(
        settings.model_registry_dir,
        providers=settings.onnx_providers,
        intra_op_threads=settings.intra_op_threads,
    )
    rules = RoutingRules.load(settings.routing_rules_file)
    images = sample_images(args.images)
    requests = [request_for(pixels, index) for index, pixels in enumerate(images)]
    infer_batch(requests[:32], registry, rules)  # warm-up: first runs allocate buffers

    rows = []
    for batch_size in BATCH_SIZES:
        row = measure(requests, registry, rules, batch_size, args.rounds)
        row["runtime_only_images_per_second"] = runtime_only(registry, images, batch_size)
        rows.append(row)

    model = registry.resolve("lesion-detector").manifest
    header = (
        f"{'batch':>5} {'img/s':>8} {'best img/s':>10} {'ms/img':>8}"
        f" {'batch p50 ms':>13} {'batch p95 ms':>13} {'runtime-only img/s':>19}"
    )
    print(f"model {model.model_id}, {args.images} images x {args.rounds} rounds")
    print(header)
    for row in rows:
        print(
            f"{row['batch_size']:>5} {row['images_per_second']:>8}"
            f" {row['images_per_second_best_round']:>10} {row['ms_per_image']:>8}"
            f" {row['batch_latency_p50_ms']:>13} {row['batch_latency_p95_ms']:>13}"
            f" {row['runtime_only_images_per_second']:>19}"
        )
    report = {
        "command": "PYTHONPATH=. .venv/bin/python bench/bench_inference.py "
        + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "provider": settings.onnx_providers[0],
            "intra_op_threads": settings.intra_op_threads,
            # Other processes share this machine; the load average says how much.
            "loadavg_1min_before": round(load_before[0], 2),
            "loadavg_1min_after": round(os.getloadavg()[0], 2),
        },
        "model": model.model_id,
        "images": args.images,
        "image_sizes": "CT_small.dcm 128x128 + phantoms 96x96..256x256",
        "rounds": args.rounds,
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
