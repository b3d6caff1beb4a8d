"""C-STORE ingest throughput: radstream's receiver against Orthanc's own, same files, one run.

``python -m bench.bench_dicom_ingest [--copies N] [--rounds R]`` (needs the broker and the Orthanc
of ``make peers-up``). pydicom's test files (uncompressed, RLE, JPEG 2000, JPEG baseline,
deflate) are copied ``--copies`` times with fresh UIDs per round; dcmtk's ``storescu`` sends
each round's files (one association per source file), alternately to

* ``radstream dicom listen`` (the console script, as operators run it, on a fresh topic prefix):
  parse the header, write + fsync + rename + directory fsync, publish ``ImageArrived`` and wait
  for the broker's acks=all confirmation, then answer; and
* Orthanc (its own DICOM port): parse, store on disk, index in its SQLite database.

The wall-clock time of each ``storescu`` run is the measure (instances/s and MB/s). Both peers
run on the same machine as storescu, so CPU contention is part of the result; the load average
before and after is recorded. Orthanc's copies are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file

from cli.dicom_demo import fresh_copy

REPO = Path(__file__).resolve().parent.parent
PEER_ENV = Path(os.environ.get("RADSTREAM_STATE_DIR", REPO / ".state")) / "orthanc" / "peer.env"
RESULTS = REPO / "bench" / "results" / "dicom_ingest.json"
# Each file and the storescu option that proposes its own transfer syntax (sent as is, both ways).
FILES = {
    "CT_small.dcm": "-xe",
    "MR_small_RLE.dcm": "-xr",
    "JPEG2000.dcm": "-xw",
    "SC_rgb_jpeg_dcmtk.dcm": "-xy",
    "image_dfl.dcm": "-xd",
}
SCU_AET = "BENCHSCU"
TIMEOUT_SECONDS = 600


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_round(directory: Path, copies: int) -> tuple[list[Path], int]:
    """``copies`` fresh copies of every file (new UIDs); the paths and their total bytes."""
    directory.mkdir(parents=True)
    paths, total = [], 0
    for name in FILES:
        for copy in range(copies):
            data = fresh_copy(Path(str(get_testdata_file(name))))
            path = directory / f"{Path(name).stem}-{copy}.dcm"
            path.write_bytes(data)
            paths.append(path)
            total += len(data)
    return paths, total


def storescu(port: int, called: str, files: list[Path], propose: str) -> float:
    """Send ``files`` in one association; the wall-clock seconds (fails on any failure)."""
    tool = shutil.which("storescu") or "storescu"
    command = [tool, "-R", propose, "-aet", SCU_AET, "-aec", called]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"storescu to {called} failed: {(done.stdout + done.stderr)[-2000:]!r}")
    return seconds


def orthanc(url: str, path: str, method: str = "GET", payload: Any = None) -> Any:
    body = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}{path}", data=body, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310  # nosec B310
        text = answer.read()
    return json.loads(text) if text.strip() else None


def start_listener(port: int, metrics_port: int, root: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RADSTREAM_TOPIC_PREFIX": f"bench.dicom-{uuid.uuid4().hex[:8]}.",
        "RADSTREAM_STORAGE_ROOTS": str(root),
        "RADSTREAM_DICOM__PORT": str(port),
        "RADSTREAM_DICOM__MAX_ASSOCIATIONS": "4",
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": str(metrics_port),
        "RADSTREAM_LOGGING__LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("radstream")), "dicom", "listen"],
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(  # nosec B310 (loopback)
                f"http://127.0.0.1:{metrics_port}/readyz", timeout=2
            ) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit("radstream dicom listen did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40, help="copies of each file per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per peer (alternating)")
    args = parser.parse_args(argv)
    values = dict(line.split("=", 1) for line in PEER_ENV.read_text().splitlines() if "=" in line)
    url = f"http://127.0.0.1:{values['ORTHANC_HTTP_PORT']}"
    orthanc(
        url,
        f"/modalities/{SCU_AET.lower()}",
        "PUT",
        {"AET": SCU_AET, "Host": "127.0.0.1", "Port": 1},
    )
    port, metrics_port = free_port(), free_port()
    load_before = os.getloadavg()
    measurements: list[dict[str, Any]] = []
    orthanc_studies: list[str] = []
    with tempfile.TemporaryDirectory(prefix="radstream-bench-dicom-") as tmp:
        root = Path(tmp) / "storage"
        root.mkdir()
        listener = start_listener(port, metrics_port, root)
        try:
            for number in range(args.rounds):
                for peer, target, called in (
                    ("radstream", port, "RADSTREAM"),
                    ("orthanc", int(values["ORTHANC_DICOM_PORT"]), values["ORTHANC_AET"]),
                ):
                    files, size = write_round(Path(tmp) / f"{peer}-{number}", args.copies)
                    # One association per source file (storescu -R cannot mix an uncompressed
                    # and an RLE instance of the same SOP class in one association).
                    seconds = sum(
                        storescu(
                            target,
                            called,
                            [f for f in files if f.name.startswith(Path(name).stem + "-")],
                            propose,
                        )
                        for name, propose in FILES.items()
                    )
                    if peer == "orthanc":
                        studies = {
                            str(dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files
                        }
                        for study in studies:
                            found = orthanc(
                                url,
                                "/tools/find",
                                "POST",
                                {"Level": "Study", "Query": {"StudyInstanceUID": study}},
                            )
                            orthanc_studies.extend(found)
                    measurements.append(
                        {
                            "peer": peer,
                            "round": number,
                            "instances": len(files),
                            "bytes": size,
                            "seconds": round(seconds, 3),
                            "instances_per_second": round(len(files) / seconds, 1),
                            "mb_per_second": round(size / seconds / 1e6, 2),
                        }
                    )
                    print(json.dumps(measurements[-1]))
        finally:
            os.killpg(listener.pid, signal.SIGTERM)
            listener.wait(timeout=120)
    for study in orthanc_studies:
        orthanc(url, f"/studies/{study}", "DELETE")
    result = {
        "benchmark": "C-STORE ingest: radstream dicom listen vs Orthanc",
        "command": "python -m bench.bench_dicom_ingest "
        f"--copies {args.copies} --rounds {args.rounds}",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "files": list(FILES),
        "sender": "dcmtk storescu -R, one association per source file, its own transfer syntax",
        "radstream": "radstream dicom listen: header, write+fsync+rename+dir fsync, "
        "ImageArrived confirmed (acks=all) before the answer",
        "orthanc": "Orthanc from Debian, default SQLite index, storage under .state/orthanc",
        "measurements": measurements,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
