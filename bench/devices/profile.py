"""``--profile``: py-spy samples the server while the rtt or mqtt part runs; the summary
shows where its time went."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on ``pid`` for ``seconds``, its collapsed stacks to ``out`` (None: no
    py-spy in the venv)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  (py-spy is not installed in the venv: no profile)", flush=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive shares of the sampled frames (py-spy's collapsed stacks)."""
    if not path.exists():
        return "  (no profile was written)"
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return "  (empty profile)"
    out = [f"  py-spy profile of the server ({total:,} samples; {path}):", "  top self time:"]
    for frame, hits in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {hits / total:6.1%}  {frame}")
    out.append("  top inclusive time (fieldwatch / sqlalchemy / asyncpg / paho frames):")
    interesting = [
        (f, hits)
        for f, hits in incl.items()
        if any(k in f for k in ("fieldwatch", "sqlalchemy", "asyncpg", "paho"))
    ]
    for frame, hits in sorted(interesting, key=lambda kv: -kv[1])[:top]:
        out.append(f"    {hits / total:6.1%}  {frame}")
    return "\n".join(out)
