"""Memory and CPU of a process, read from /proc."""

from __future__ import annotations

import os
import resource

from .common import MB


def proc_status_kb(pid: int | str, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (``VmRSS``, ``VmHWM``), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mb_from_kb(kb: int | None) -> float | None:
    return None if kb is None else round(kb * 1024 / MB, 1)


def rss_baseline() -> int:
    """This process's RSS now (kB); the start of its RSS growth."""
    return proc_status_kb("self", "VmRSS") or 0


def peak_rss_kb() -> int:
    """This process's peak RSS (kB): ``VmHWM``. ``ru_maxrss`` would be the same for a process
    that was not started by another, but Linux carries the parent's high-water mark across
    fork + exec into ``ru_maxrss`` (kept apart as ``ru_maxrss_kb``), so a small child would
    show its parent's peak."""
    return proc_status_kb("self", "VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
