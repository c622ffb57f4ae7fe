"""The figures as rows, judged against the targets, written as JSON and Markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .common import (
    CSV,
    MB,
    NACHA,
    RESULTS,
    TARGET_ACHKIT_MEMORY,
    TARGET_ACHKIT_SPEEDUP,
    TARGET_CSV_TPS,
    TARGET_PEAK_AT,
    TARGET_PEAK_MB,
)
from .memory import mb_from_kb
from .pipeline import STATUS_POLL_SECONDS, WARMUP_N


@dataclass
class Row:
    measurement: str
    kind: str  # ceiling | peer | stage | pipeline
    fmt: str
    n: int
    input_bytes: int
    result: dict[str, Any]

    @property
    def seconds(self) -> float | None:
        return self.result.get("seconds")

    @property
    def tps(self) -> float | None:
        s = self.seconds
        return self.n / s if s and self.result.get("ok") else None

    @property
    def mbps(self) -> float | None:
        s = self.seconds
        return self.input_bytes / MB / s if s and self.result.get("ok") else None

    @property
    def loaded(self) -> bool:
        """Other processes used more than 0.2 CPU on average while this was measured."""
        wall = self.result.get("process_seconds") or 0
        return wall > 0 and (self.result.get("other_cpu_seconds") or 0) / wall > 0.2

    @property
    def peak_mb(self) -> float | None:
        return mb_from_kb(self.result.get("peak_kb"))

    @property
    def growth_mb(self) -> float | None:
        peak, base = self.result.get("peak_kb"), self.result.get("baseline_kb")
        return None if peak is None or base is None else mb_from_kb(peak - base)

    def to_json(self) -> dict[str, Any]:
        return {"measurement": self.measurement, "kind": self.kind, "format": self.fmt, "transactions": self.n,
                "input_mb": round(self.input_bytes / MB, 2), "seconds": round_to(self.seconds, 3),
                "tx_per_s": round_to(self.tps, 0), "mb_per_s": round_to(self.mbps, 1), "peak_rss_mb": self.peak_mb,
                "rss_growth_mb": self.growth_mb, "result": self.result}


def round_to(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def targets(row: Row, rows: Sequence[Row]) -> list[str]:
    """The issue's targets this row is judged against, each ``met`` or ``not met`` with the figure."""
    out: list[str] = []
    ok = row.result.get("ok")
    if row.kind == "pipeline" and row.fmt == CSV:
        if not ok:
            out.append(f"T1 >= {TARGET_CSV_TPS // 1000}k tx/s: not met (the run failed)")
        else:
            verdict = "met" if (row.tps or 0) >= TARGET_CSV_TPS else "not met"
            out.append(f"T1 >= {TARGET_CSV_TPS // 1000}k tx/s: {verdict} ({row.tps / 1000:.1f}k)")
    if row.kind in ("stage", "pipeline") and row.n >= TARGET_PEAK_AT:
        peak = row.peak_mb
        if peak is None:
            out.append(f"T2 < {TARGET_PEAK_MB} MB: not measured")
        else:
            verdict = "met" if peak < TARGET_PEAK_MB else "not met"
            out.append(f"T2 < {TARGET_PEAK_MB} MB: {verdict} ({peak:.0f} MB)")
    if row.kind == "validation" or (row.kind == "stage" and row.fmt == NACHA
                                    and row.measurement.startswith("FileValidator")):
        peer = next((r for r in rows if r.kind == "peer" and r.n == row.n and r.result.get("ok")), None)
        if peer is None or not ok or not peer.tps or not row.tps:
            out.append("T3 vs achkit: not measured")
        else:
            speed = row.tps / peer.tps
            memory = (row.peak_mb or 0) / (peer.peak_mb or 1)
            fast = "met" if speed >= TARGET_ACHKIT_SPEEDUP else "not met"
            out.append(f"T3 >= {TARGET_ACHKIT_SPEEDUP:g}x achkit tx/s: {fast} ({speed:.2f}x)")
            out.append(f"T3 <= 1/10 achkit peak RSS: {'met' if memory <= TARGET_ACHKIT_MEMORY else 'not met'}"
                       f" ({memory:.2f}x)")
            # Peak RSS counts the interpreter and its imports, which at 100k outweigh the data:
            # what the validation itself takes is the growth, shown beside it (never instead).
            if row.growth_mb is not None and peer.growth_mb:
                grown = row.growth_mb / peer.growth_mb
                out.append(f"T3 <= 1/10 achkit RSS growth: {'met' if grown <= TARGET_ACHKIT_MEMORY else 'not met'}"
                           f" ({grown:.2f}x)")
    return out


def fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if digits == 0 else f"{value:,.{digits}f}"


def markdown(meta: dict[str, Any], rows: list[Row]) -> str:
    lines = [
        "# Payment-file benchmark", "",
        f"{meta['date']}, {meta['cpus']} CPUs ({meta['cpu']}), Python {meta['python']}, lxml {meta['lxml']}, "
        f"achkit {meta['achkit']}, commit {meta['commit']}"
        + (f" (uncommitted changes in {', '.join(meta['uncommitted_changes_in'])})"
           if meta["uncommitted_changes_in"] else "")
        + f", code {meta['code_digest']}{' (a copy taken at the start)' if meta.get('snapshot') else ''}"
        + f"; pipeline clock {meta['payment_clock']}. Every measurement in a process of its own; "
          "MB = 10^6 bytes. `python -m benchmarks.payments` (see its docstring for the method).", "",
        "| measurement | format | N | input MB | seconds | tx/s | MB/s | peak RSS MB | RSS growth MB | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        status = "" if row.result.get("ok") else " **FAILED**"
        if row.loaded:
            status += " ‡"
        lines.append(
            f"| {row.measurement}{status} | {row.fmt.upper()} | {row.n:,} | {row.input_bytes / MB:.1f} | "
            f"{fmt_num(row.seconds, 2)} | {fmt_num(row.tps, 0)} | {fmt_num(row.mbps, 1)} | "
            f"{fmt_num(row.peak_mb, 0)} | {fmt_num(row.growth_mb, 0)} | {'; '.join(targets(row, rows)) or '—'} |")
    lines += ["", "Where the input of a stage is a work file, `input MB` is that file. Pipeline: seconds from the end "
              "of the upload to the record's `Completed` (output committed), on a host warmed by a small file; "
              "peak RSS and growth are devhost's (the Functions host process).", ""]
    notes = []
    if any(row.loaded for row in rows):
        notes.append("- ‡ other processes on the machine used more than a fifth of a CPU on average during this "
                     "measurement (`other_cpu_seconds` in the JSON): its figures are pessimistic.")
    repeated = sorted({f"{row.fmt.upper()} {row.n:,}" for row in rows if row.result.get("attempts")})
    if repeated:
        notes.append(f"- measured more than once because other load skewed an attempt: {', '.join(repeated)}; "
                     "the least disturbed attempt is shown, every attempt's seconds are in the JSON.")
    digests = sorted({row.result.get("code_digest") for row in rows if row.result.get("code_digest")})
    if len(digests) > 1:
        notes.append(f"- **the code changed during the run** (digests {', '.join(digests)}): rows measured "
                     "different versions.")
    for row in rows:
        r = row.result
        if row.kind == "pipeline" and r.get("states_seen_at_s") is not None:
            check = r.get("output_check") or {}
            notes.append(
                f"- {row.fmt.upper()} {row.n:,} pipeline{_runs_text(r)}: {stage_split(row, rows)}; "
                f"upload {r.get('upload_seconds', 0):.1f} s; states first "
                f"seen at {r.get('states_seen_at_s')} s after it (status polled every {STATUS_POLL_SECONDS:g} s); "
                f"warm-up file of {WARMUP_N:,} before it on the same host {_warmup_text(r)}; "
                f"CPU seconds {r.get('cpu_seconds')}; peak RSS MB of "
                f"the stack {r.get('stack_peak_mb')}; output {r.get('output_bytes', 0) / MB:.1f} MB, XSD-valid "
                f"{check.get('xsd_valid')}, {check.get('transactions')} CdtTrfTxInf (GrpHdr NbOfTxs "
                f"{check.get('grphdr_nb_of_txs')}).")
        top = (r.get("profile") or {}).get("top") or {}
        if top:
            busy = [f"{f.split(' (')[0]} {p}%" for f, p in top.get("project_inclusive_pct", [])
                    if not f.startswith(("<module>", "main (", "run (devhost"))][:8]
            leaves = [f"{f} {p}%" for f, p in top.get("self_pct", [])[:8]]
            notes.append(f"    - py-spy, share of devhost's active samples inside: {', '.join(busy)}; "
                         f"on top of the stack: {', '.join(leaves)}")
        if not r.get("ok"):
            notes.append(f"- **{row.measurement} {row.fmt.upper()} {row.n:,} failed**: {r.get('error')}")
            notes.extend(f"    - `{line[:300]}`" for line in (r.get("log_excerpt") or [])[-12:])
    if notes:
        lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


def _runs_text(result: dict[str, Any]) -> str:
    runs = result.get("runs") or []
    if len(runs) < 2:
        return ""
    seconds = ", ".join(fmt_num(run["seconds"], 2) for run in runs)
    return f" (the median of {len(runs)} runs on fresh stacks, which took {seconds} s; this one below)"


def _warmup_text(result: dict[str, Any]) -> str:
    warm = result.get("warmup") or {}
    if warm.get("seconds") is None:
        return "(not measured)"
    return f"{warm['seconds']:.2f} s (trigger {warm.get('trigger_seconds') or 0:.2f} s)"


def stage_split(pipeline: Row, rows: list[Row]) -> str:
    """Where the pipeline's seconds went: the trigger (upload end -> FileValidator's record), each
    step's invocation as devhost logged it next to the same step alone, and the rest (hand-offs,
    the record writes between steps)."""
    r = pipeline.result
    steps = r.get("step_ms") or {}
    alone = {r.measurement.split()[0]: r.seconds for r in rows
             if r.kind == "stage" and r.fmt == pipeline.fmt and r.n == pipeline.n and r.result.get("ok")}
    parts = []
    if r.get("trigger_seconds") is not None:
        parts.append(f"trigger (blob polling) {r['trigger_seconds']:.2f} s")
    for stage in ("FileValidator", "FileAdaptor", "FileCreator"):
        if stage in steps:
            solo = alone.get(stage)
            parts.append(f"{stage} {steps[stage] / 1000:.2f} s" + (f" (alone {solo:.2f} s)" if solo else ""))
    if r.get("seconds") is not None and r.get("trigger_seconds") is not None and len(steps) == 3:
        # The invocations start a little before the record's receivedAt and end a little after its
        # Completed, so this can come out a few milliseconds below zero.
        rest = r["seconds"] - r["trigger_seconds"] - sum(steps.values()) / 1000
        parts.append(f"hand-offs and the rest {max(rest, 0.0):.2f} s")
    return ", ".join(parts) or "no step seen"


def write_results(meta: dict[str, Any], rows: list[Row], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": [dict(r.to_json(), targets=targets(r, rows)) for r in rows]}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(meta, rows))


def print_row(row: Row) -> None:
    r = row.result
    print(f"  {row.measurement:<34} {fmt_num(row.seconds, 2):>8} s {fmt_num(row.tps, 0):>10} tx/s "
          f"peak {fmt_num(row.peak_mb, 0):>5} MB growth {fmt_num(row.growth_mb, 0):>5} MB"
          + ("" if r.get("ok") else f"  FAILED: {str(r.get('error'))[:400]}"), flush=True)
