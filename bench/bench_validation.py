"""Benchmark of the validation stage's pure logic over the bundled sample images.

Reports, per sample and overall, validations per second and the share of the time spent in
the decode step (``decode_frames``, timed on its own with the same inputs) versus everything
else (size, checksum, header parsing, geometry/format/value checks, clinical rules).

    PYTHONPATH=. .venv/bin/python bench/bench_validation.py [--seconds 1.0]

Prints a table and writes bench/results/validation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from schemas.settings import ValidationSettings
from streams.validation import ValidationAccepted, load_clinical_rules, validate_image
from streams.validation.decoding import decode_frames, load_pixels, read_header

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
RESULTS = ROOT / "bench" / "results" / "validation.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _rate(action: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run ``action`` repeatedly for about ``seconds``; return (runs, mean seconds per run)."""
    action()  # warm-up: imports, plugin discovery, caches
    runs, start = 0, time.perf_counter()
    while True:
        action()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and runs >= 5:
            return runs, elapsed / runs


def main() -> None:
    """Measure every sample image and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per sample")
    args = parser.parse_args()
    limits = ValidationSettings()
    rules = load_clinical_rules(limits.clinical_rules_file)
    paths = sorted([*SAMPLES.glob("dicom/*.dcm"), *SAMPLES.glob("raster/*")])
    rows = []
    for path in paths:
        data = path.read_bytes()
        outcome = validate_image(data, limits=limits, rules=rules)
        if not isinstance(outcome, ValidationAccepted):
            continue
        runs, per_validation = _rate(
            lambda data=data: validate_image(data, limits=limits, rules=rules), args.seconds
        )
        source = load_pixels(data, read_header(data))
        _runs, per_decode = _rate(lambda source=source: decode_frames(source), args.seconds / 2)
        geometry = outcome.geometry
        rows.append(
            {
                "sample": path.relative_to(SAMPLES).as_posix(),
                "bytes": len(data),
                "size": f"{geometry.width}x{geometry.height}x{geometry.samples_per_pixel}",
                "runs": runs,
                "validations_per_second": round(1 / per_validation, 1),
                "ms_per_validation": round(per_validation * 1000, 3),
                "ms_decode": round(per_decode * 1000, 3),
                "decode_share": round(min(per_decode / per_validation, 1.0), 3),
            }
        )
    total_validation = sum(row["ms_per_validation"] for row in rows)
    total_decode = sum(row["ms_decode"] for row in rows)
    summary = {
        "samples": len(rows),
        "validations_per_second_mixed": round(len(rows) / (total_validation / 1000), 1),
        "decode_share_mixed": round(total_decode / total_validation, 3),
        "check_share_mixed": round(1 - total_decode / total_validation, 3),
    }
    machine = {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    header = f"{'sample':32} {'size':>14} {'val/s':>9} {'ms/val':>8} {'ms dec':>8} {'decode':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['sample']:32} {row['size']:>14} {row['validations_per_second']:>9} "
            f"{row['ms_per_validation']:>8} {row['ms_decode']:>8} {row['decode_share']:>7.0%}"
        )
    print("-" * len(header))
    print(
        f"mixed set: {summary['validations_per_second_mixed']} validations/s, "
        f"decode {summary['decode_share_mixed']:.0%} / checks {summary['check_share_mixed']:.0%}"
    )
    print(f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": machine, "summary": summary, "samples": rows}, indent=2) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
