"""Summaries of pyinstrument sessions: where the sampled time went, by function and by package.

pyinstrument samples the thread it was started in (the event loop's thread in a worker), so a
stage's work sent to ``asyncio.to_thread`` shows up as time the loop spends waiting in
``epoll.poll``, not as decoding; the work-limit loop runs everything on one thread and shows it.
"""

from __future__ import annotations

import sysconfig
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyinstrument.frame import Frame
from pyinstrument.session import Session

REPO_ROOT = Path(__file__).resolve().parent.parent
IDLE_FUNCTIONS = frozenset({"epoll.poll", "select.select", "poll.poll", "kqueue.control"})
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def package_of(file_path: str | None) -> str:
    """A short owner for a source file: the site-package, the stdlib module, or our package."""
    if not file_path or file_path.startswith("<"):
        return "built-in"
    path = Path(file_path)
    parts = path.parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else "site-packages"
    try:
        relative = path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        pass
    else:
        return relative.parts[0].removesuffix(".py")
    try:
        relative = path.resolve().relative_to(STDLIB)
    except ValueError:
        return "other"
    return "stdlib:" + relative.parts[0].removesuffix(".py")


def _frames(frame: Frame, owner: str) -> Iterator[tuple[Frame, str]]:
    """Every real frame with the package that owns it (built-ins belong to their caller's)."""
    package = package_of(frame.file_path)
    if package == "built-in":
        package = owner
    yield frame, package
    for child in frame.children:
        if not child.is_synthetic:
            yield from _frames(child, package)


def _largest(values: dict[str, float], top: int) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: item[1], reverse=True)[:top]


def summarise(session: Session, top: int = 12) -> dict[str, Any]:
    """Sampled seconds by function (self time) and by package, plus the idle share.

    "idle" is time the thread spent blocked in the selector (waiting for the network, the
    database or a worker thread); everything else is CPU or blocking calls on that thread.
    """
    root = session.root_frame()
    total = session.duration
    if root is None or total <= 0:
        return {
            "seconds": 0.0,
            "process_cpu_seconds": 0.0,
            "idle_share": 0.0,
            "by_package": {},
            "top_functions": [],
        }
    by_function: defaultdict[str, float] = defaultdict(float)
    by_package: defaultdict[str, float] = defaultdict(float)
    idle = 0.0
    for frame, package in _frames(root, "other"):
        own = frame.total_self_time
        if own <= 0:
            continue
        if frame.function in IDLE_FUNCTIONS:
            idle += own
            by_package["idle (selector wait)"] += own
            continue
        where = frame.file_path_short or frame.file_path or "?"
        by_function[f"{frame.function} ({where}:{frame.line_no})"] += own
        by_package[package] += own
    return {
        "seconds": round(total, 3),
        # CPU of the whole process (every thread) during the window, as pyinstrument read it.
        "process_cpu_seconds": round(session.cpu_time, 3),
        "idle_share": round(idle / total, 3),
        "by_package": {k: round(v / total, 3) for k, v in _largest(by_package, top)},
        "top_functions": [
            {"function": name, "share": round(seconds / total, 3)}
            for name, seconds in _largest(by_function, top)
        ],
    }


def text_report(session: Session) -> str:
    """pyinstrument's own text rendering (call tree), for the profile files."""
    from pyinstrument.renderers import ConsoleRenderer  # noqa: PLC0415

    return ConsoleRenderer(unicode=False, color=False, short_mode=False).render(session)
