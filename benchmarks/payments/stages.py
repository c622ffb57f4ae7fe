"""Measurements in a process of their own, on the local disk: the ceiling, the peer, and each
stage of the pipeline alone."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import CLIENTS, payment_clock
from .memory import peak_rss_kb, rss_baseline

if TYPE_CHECKING:
    from .local_ports import DiskFileRecords


def _warm() -> None:
    """What a warm Functions host has done before a file arrives: imports, the XSD compiled."""
    from file_pipeline.formats.xsd import load_schema

    load_schema("pain.001.001.09")


def measure_csv_reader(args: argparse.Namespace) -> dict[str, Any]:
    import csv

    base = rss_baseline()
    started = time.perf_counter()
    rows = 0
    with open(args.input, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for _ in reader:
            rows += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "transactions": rows, "baseline_kb": base, "peak_kb": peak_rss_kb(), "ok": True}


def measure_achkit(args: argparse.Namespace) -> dict[str, Any]:
    import achkit

    base = rss_baseline()
    started = time.perf_counter()
    with open(args.input, encoding="ascii") as fh:
        text = fh.read()
    result = achkit.validate(text)
    seconds = time.perf_counter() - started
    entries = sum(1 for line in text.splitlines() if line.startswith("6"))
    errors = result.get("errors", [])
    return {"seconds": seconds, "transactions": entries, "baseline_kb": base, "peak_kb": peak_rss_kb(),
            "ok": bool(result.get("ok")), "error": None if result.get("ok") else f"achkit: {errors[:3]}",
            "version": getattr(achkit, "__version__", "?")}


def measure_validate_only(args: argparse.Namespace) -> dict[str, Any]:
    """FileValidator's validation as achkit does its own: read and check every rule, write
    nothing (no work file, no record). The like-for-like figure against the peer."""
    from file_pipeline.validation import validate_source

    from .local_ports import local_pipeline

    pipeline, _, _, _ = local_pipeline(Path(args.workdir))
    ref = pipeline.reference.get()
    moment = datetime.fromisoformat(payment_clock().replace("Z", "+00:00"))
    base = rss_baseline()
    started = time.perf_counter()
    with open(args.input, "rb") as raw:
        validated = validate_source(raw, ref, CLIENTS[args.format], moment, file_id="PFBENCHVALIDATEONLY",
                                    accept=lambda tx: None)
    seconds = time.perf_counter() - started
    result = validated.validation
    ok = bool(result.output_allowed) and result.accepted == args.n
    return {"seconds": seconds, "transactions": result.accepted, "baseline_kb": base, "peak_kb": peak_rss_kb(),
            "ok": ok, "error": None if ok else f"{result.group_status}: {list(result.file_findings)[:3]}"}


def _file_record(records: DiskFileRecords, client: str, name: str) -> Any:
    record, _ = records.latest(client, name)
    return record


def measure_stage(args: argparse.Namespace) -> dict[str, Any]:
    """One use case of the pipeline on local-disk ports: validate, adapt or create."""
    from choreography.entities import ADAPTED_QUEUE, INPUT_CONTAINER, OUTPUT_CONTAINER, VALIDATED_QUEUE, WORK_CONTAINER
    from choreography.handling import consume
    from file_pipeline.steps.validate import Upload

    from .local_ports import local_pipeline

    work = Path(args.workdir)
    pipeline, blobs, records, queues = local_pipeline(work)
    client = CLIENTS[args.format]
    name = f"{client}/{Path(args.input).name}"
    pipeline.reference.get()  # loaded once per process, before the first file, as in the host
    _warm()
    stage_input: int
    if args.child == "validate":
        etag = blobs.put_file(INPUT_CONTAINER, name, Path(args.input))
        upload = Upload(container=INPUT_CONTAINER, name=name, length=Path(args.input).stat().st_size, etag=etag)
        stage_input = upload.length or 0
        base = rss_baseline()
        started = time.perf_counter()
        outcome = pipeline.validate(upload)
        seconds = time.perf_counter() - started
        detail = f"outcome {outcome.value}"
    else:
        queue, consumer, expected = (
            (VALIDATED_QUEUE.name, pipeline.adaptor, "Adapted") if args.child == "adapt"
            else (ADAPTED_QUEUE.name, pipeline.creator, "Completed"))
        incoming = queues.take(queue)
        # The work file the hand-off points at (its claim check names container, blob and size).
        handoff = json.loads(incoming.body)["data"]
        stage_input = handoff["transactions" if args.child == "adapt" else "instructions"]["size"]
        base = rss_baseline()
        started = time.perf_counter()
        consume(incoming, consumer, queues)
        seconds = time.perf_counter() - started
        detail = f"expected {expected}"
    peak = peak_rss_kb()
    record = _file_record(records, client, Path(args.input).name)
    state = record.state.value if record else "missing"
    result: dict[str, Any] = {
        "seconds": seconds, "transactions": record.accepted if record else 0, "baseline_kb": base, "peak_kb": peak,
        "stage_input_bytes": stage_input, "state": state, "detail": detail,
        "reasons": list(record.reasons) if record else [],
    }
    expected_state = {"validate": "Validated", "adapt": "Adapted", "create": "Completed"}[args.child]
    result["ok"] = state == expected_state and not queues.dead_letters
    if not result["ok"]:
        result["error"] = (f"state {state} (expected {expected_state}); reasons {result['reasons'][:3]}; "
                           f"dead letters {[(d.reason, d.description[:300]) for d in queues.dead_letters]}")
    if args.child == "create" and result["ok"]:
        output = blobs.root / OUTPUT_CONTAINER / record.locations["output"].split("/", 1)[1]
        result["output_path"] = str(output)
        result["output_bytes"] = output.stat().st_size
    if args.child == "validate":
        result["work_bytes"] = {n: blobs.info(WORK_CONTAINER, n).size for n in blobs.names(WORK_CONTAINER)}
    return result
