"""The whole pipeline on the local stack, in a process of its own: the warm-up file, the measured
file, where the time went, the output checked; optionally profiled."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import CLIENTS, EXTENSIONS, payment_clock
from .inputs import write_input
from .memory import cpu_seconds, mb_from_kb, proc_status_kb


def _stack_pids(stack: Any) -> dict[str, int]:
    return {name: proc.proc.pid for name, proc in stack.processes.items() if proc.proc is not None}


_LOG_PROBLEM = re.compile(r"error|exception|traceback|warning|failed|permanent|dead-letter|timed? ?out|killed",
                          re.IGNORECASE)
# Not the pipeline's: Azurite's telemetry failing to reach Application Insights (no network here),
# and the broker noting clients that hung up when the stack stopped.
_LOG_NOISE = re.compile(r"applicationinsights|Ingestion endpoint|GetAddrInfoReqWrap|\[object Error\]|"
                        r"Couldn't send: (ConnectionResetError|BrokenPipeError)")


def _log_excerpt(log_dir: Path, limit: int = 40) -> list[str]:
    lines: list[str] = []
    for log in sorted(log_dir.glob("*.log")):
        with log.open(errors="replace") as fh:
            lines += [f"[{log.stem}] {line.rstrip()}"[:600] for line in fh
                      if _LOG_PROBLEM.search(line) and not _LOG_NOISE.search(line)]
    return lines[-limit:]


WARMUP_N = 1000
# The status API is only how the benchmark learns the file settled (the seconds come from the
# record itself), so it is asked seldom: each answer costs devhost a table read.
STATUS_POLL_SECONDS = 1.0


def _through_pipeline(stack: Any, container: Any, client: str, name: str, path: Path, timeout: float,
                      devhost: int, profile: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Upload one file and follow it to ``Completed``/``Rejected``: seconds from the end of the
    upload to the record's own ``updatedAt`` of that final state (the instant FileCreator saved
    it, after the output was committed), and to the first status answer showing it (polled every
    :data:`STATUS_POLL_SECONDS`, so up to that much later)."""
    from devstack.stack import http_json

    out: dict[str, Any] = {"file_name": f"{client}/{name}"}
    up_started = time.perf_counter()
    with path.open("rb") as fh:
        container.upload_blob(f"{client}/{name}", fh, length=path.stat().st_size, max_concurrency=2)
    uploaded, uploaded_wall = time.perf_counter(), time.time()
    out["upload_seconds"] = uploaded - up_started
    url = f"{stack.functions_url}/api/payment-files/{client}/{name}"
    states: dict[str, float] = {}
    timeline: list[tuple[float, float | None, str | None]] = []  # (s after upload, devhost RSS MB, state)
    body: Any = None
    profiler = profile() if profile else None
    try:
        while time.perf_counter() < uploaded + timeout:
            code, body = http_json("GET", url, timeout=30)
            now = time.perf_counter()
            state = body.get("state") if code == 200 and isinstance(body, dict) else None
            if state and state not in states:
                states[state] = round(now - uploaded, 2)
            timeline.append((round(now - uploaded, 2), mb_from_kb(proc_status_kb(devhost, "VmRSS")), state))
            if state in ("Completed", "Rejected"):
                out["seen_seconds"] = now - uploaded
                break
            if not stack.processes["devhost"].running:
                out["error"] = f"devhost exited with {stack.processes['devhost'].proc.returncode}"
                break
            time.sleep(STATUS_POLL_SECONDS)
    finally:
        out["profiler"] = profiler
    out.update(states_seen_at_s=states, status=body, devhost_rss_timeline=timeline)
    if "seen_seconds" in out:
        settled = datetime.fromisoformat(body["updatedAt"]).timestamp()
        received = datetime.fromisoformat(body["receivedAt"]).timestamp()
        out["seconds"] = settled - uploaded_wall
        out["trigger_seconds"] = received - uploaded_wall  # upload end -> FileValidator's record
    return out


STEP_FUNCTIONS = {"file_pipeline_validate": "FileValidator", "file_pipeline_adapt": "FileAdaptor",
                  "file_pipeline_create": "FileCreator"}


def _step_durations(logs: Path, files_before: int = 1, wait: float = 10.0) -> dict[str, int]:
    """Each step's first successful invocation after ``files_before`` files (the warm-up), as
    devhost logged it: milliseconds. FileCreator logs its end a moment after it saved
    ``Completed`` (it announces the file and deletes the work files first), so its line is
    waited for."""
    pattern = re.compile(r"Executed 'Functions\.(\w+)' \(Succeeded, Id=[^,]+, Duration=(\d+)ms\)")
    log = logs / "devhost.log"
    deadline = time.monotonic() + wait
    while True:
        seen: dict[str, list[int]] = {}
        if log.exists():
            for match in pattern.finditer(log.read_text(errors="replace")):
                if match.group(1) in STEP_FUNCTIONS:
                    seen.setdefault(STEP_FUNCTIONS[match.group(1)], []).append(int(match.group(2)))
        found = {step: times[files_before] for step, times in seen.items() if len(times) > files_before}
        if len(found) == len(STEP_FUNCTIONS) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def measure_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline on a fresh local stack, warmed by a small file first (as a host that
    has run before: Service Bus links open, reference data loaded); then the measured file, with
    devhost's peak RSS and CPU and the output checked."""
    from azure.storage.blob import BlobServiceClient

    from devstack.seed import seed_all
    from devstack.stack import Stack

    work = Path(args.workdir)
    logs = work / "logs"
    client = CLIENTS[args.format]
    path = Path(args.input)
    stamp = int(time.time())
    stack = Stack(with_devhost=False, settings={"PAYMENT_FILES_CLOCK": payment_clock()}, log_dir=logs)
    result: dict[str, Any] = {"ok": False}
    stack.start()
    try:
        seed_all(stack.storage_connection)
        stack.start_devhost()
        pids = _stack_pids(stack)
        devhost = pids["devhost"]
        service = BlobServiceClient.from_connection_string(stack.storage_connection,
                                                           max_block_size=8 * 1024 * 1024,
                                                           max_single_put_size=8 * 1024 * 1024)
        container = service.get_container_client("payment-files-in")
        with contextlib.suppress(Exception):
            container.create_container()
        warm = work / f"warmup.{EXTENSIONS[args.format]}"
        write_input(warm, args.format, WARMUP_N, seed=7, prefix="WARM")
        warmed = _through_pipeline(stack, container, client, f"warmup-{stamp}.{EXTENSIONS[args.format]}", warm,
                                   args.timeout, devhost)
        warmed.pop("profiler", None)
        result["warmup"] = {k: warmed.get(k) for k in ("file_name", "seconds", "seen_seconds", "trigger_seconds",
                                                       "states_seen_at_s", "error")}
        result["warmup"]["transactions"] = WARMUP_N
        if (warmed.get("status") or {}).get("state") != "Completed":
            result["error"] = f"the warm-up file did not complete: {json.dumps(warmed.get('status'))[:800]}"
            result["log_excerpt"] = _log_excerpt(logs)
            return result
        time.sleep(1.0)  # let the warm-up's last work (event, clean-up) settle before the baseline
        base = proc_status_kb(devhost, "VmRSS") or 0
        cpu_before = {k: cpu_seconds(p) for k, p in pids.items()}
        run = _through_pipeline(stack, container, client, f"bench-{args.n}-{stamp}.{EXTENSIONS[args.format]}", path,
                                args.timeout, devhost, profile=lambda: start_profiler(args, devhost))
        peak = proc_status_kb(devhost, "VmHWM")
        stop_profiler(run.pop("profiler"), result)
        result.update(run)
        result["step_ms"] = _step_durations(logs)
        result.update({
            "baseline_kb": base, "peak_kb": peak,
            "stack_peak_mb": {k: mb_from_kb(proc_status_kb(p, "VmHWM")) for k, p in pids.items()},
            "cpu_seconds": {k: round((cpu_seconds(p) or 0) - (cpu_before[k] or 0), 1) for k, p in pids.items()},
        })
        body = run.get("status")
        state = body.get("state") if isinstance(body, dict) else None
        if "seen_seconds" not in run:
            result.setdefault("error", f"not settled within {args.timeout:.0f} s after the upload; "
                                       f"last status {json.dumps(body)[:800]}")
            result["log_excerpt"] = _log_excerpt(logs)
            return result
        result["transactions"] = (body.get("counts") or {}).get("accepted", 0)
        if state != "Completed":
            result["error"] = (f"file ended {state}: reasons {body.get('reasons')} "
                               f"transaction reasons {body.get('transactionReasons')}")
            result["log_excerpt"] = _log_excerpt(logs)
            return result
        out_container, out_name = body["locations"]["output"].split("/", 1)
        output = work / "output.xml"
        with output.open("wb") as fh:
            service.get_blob_client(out_container, out_name).download_blob(max_concurrency=2).readinto(fh)
        result["output_bytes"] = output.stat().st_size
        result["output_check"] = check_output(output)
        check = result["output_check"]
        result["ok"] = check["xsd_valid"] and check["transactions"] == check["grphdr_nb_of_txs"] == args.n
        if not result["ok"]:
            result["error"] = f"output check failed: {result['output_check']}"
        warnings = _log_excerpt(logs)
        if warnings:
            result["log_excerpt"] = warnings
        return result
    finally:
        stack.stop()


def start_profiler(args: argparse.Namespace, pid: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    """With ``--profile DIR``: py-spy samples devhost (all threads, without pausing it) until
    the file settles; its collapsed stacks (what flamegraph.pl and speedscope read) land in DIR."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    folder = Path(args.profile)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"devhost-{args.format}-{args.n}.txt"
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--nonblocking",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, out


def stop_profiler(profiler: tuple[subprocess.Popen[bytes], Path] | None, result: dict[str, Any]) -> None:
    if profiler is None:
        return
    import signal

    proc, out = profiler
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    if out.exists():
        result["profile"] = {"collapsed_stacks": str(out), "top": profile_summary(out)}
    else:
        result["profile"] = {"error": (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")[-500:]}


PROJECT_CODE = ("file_pipeline/", "choreography/", "devhost/")


def profile_summary(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks (active samples of every devhost thread): the share of
    samples spent inside each function of the project, inclusive, and in each function itself
    (the leaf of the stack), whatever library it belongs to."""
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
        for frame in dict.fromkeys(f for f in frames if any(f"({p}" in f for p in PROJECT_CODE)):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(100 * count / total, 1)) for frame, count in best]

    return {"samples": [("active", total)], "project_inclusive_pct": ranked(inclusive),
            "self_pct": ranked(leaves)} if total else {}


def check_output(path: Path) -> dict[str, Any]:
    """Stream the pain.001.001.09 through the official XSD, counting transactions; compare the
    group header's NbOfTxs."""
    from lxml import etree

    from file_pipeline.formats.xsd import load_schema

    ns = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
    tx_tag, nb_tag = f"{{{ns}}}CdtTrfTxInf", f"{{{ns}}}NbOfTxs"
    count, declared, started = 0, None, time.perf_counter()
    try:
        for _, elem in etree.iterparse(str(path), events=("end",), tag=(tx_tag, nb_tag),
                                       schema=load_schema("pain.001.001.09"), resolve_entities=False,
                                       no_network=True, load_dtd=False, huge_tree=False):
            if elem.tag == tx_tag:
                count += 1
                elem.clear()
                parent = elem.getparent()
                while parent is not None and elem.getprevious() is not None:
                    del parent[0]
            elif declared is None:
                declared = int(elem.text or 0)
        valid, error = True, None
    except etree.XMLSyntaxError as exc:
        valid, error = False, str(exc)[:500]
    return {"xsd_valid": valid, "error": error, "transactions": count, "grphdr_nb_of_txs": declared,
            "seconds": round(time.perf_counter() - started, 1)}


def count_transactions(path: Path) -> int:
    """``CdtTrfTxInf`` elements in an XML file, by a byte scan (the XSD check ran in the stage)."""
    tag, count, tail = b"<CdtTrfTxInf>", 0, b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            data = tail + chunk
            count += data.count(tag)
            tail = data[-(len(tag) - 1):]
    return count
