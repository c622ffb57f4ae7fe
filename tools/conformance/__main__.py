"""``python -m tools.conformance``: Microsoft's azure-servicebus live tests against the emulator.

1. Downloads the pinned azure-servicebus source distribution from PyPI with pip, checks its
   SHA-256 against :data:`SDIST_SHA256`, and extracts its ``tests/`` under ``.conformance/``
   (git-ignored; Microsoft's files are never committed).  The suite's ``servicebus_preparer.py``
   is left out: the shim in ``shim/`` stands in for it and for ``devtools_testutils``.
2. Collects the tests once with the shim, which names an entity for every queue, topic and
   subscription preparer and writes the emulator's configuration from the preparers' arguments.
3. Starts a fresh in-memory emulator on that configuration (through devstack, the one launcher)
   and runs each test file in its own pytest process, ``--jobs`` at a time.  pytest-timeout
   interrupts a test after ``--timeout`` seconds; a process that does not come back from a hang
   is killed, the test in flight is recorded as hung and the rest of its file runs on.
4. Prints a table per file, the tests that are not applicable with the reason, every failure
   with its first line, and last ``SDK conformance: N passed of M applicable``.

Not part of ``make test``: some of Microsoft's tests sleep for five minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from devstack.stack import ROOT, ServiceBusEmulator

SDK_VERSION = "7.15.0"
SDIST = f"azure_servicebus-{SDK_VERSION}.tar.gz"
SDIST_SHA256 = "62c73f3d9efbaf0089a375adc5ef992ffe6d7d0b1218b8462265aa30ad352c3e"
WORK = ROOT / ".conformance"  # --work-dir changes it: parallel runs must not share one
SHIM = Path(__file__).with_name("shim")

# The suite's files that talk to a namespace.  The others test the SDK offline (parsers, mocks)
# and say nothing about the emulator.
MESSAGING_FILES = [
    "test_queues.py", "test_sessions.py", "test_subscriptions.py", "test_topic.py", "test_sb_client.py",
    "test_list_sessions.py", "test_message.py",
    "async_tests/test_queues_async.py", "async_tests/test_sessions_async.py",
    "async_tests/test_subscriptions_async.py", "async_tests/test_topic_async.py",
    "async_tests/test_sb_client_async.py", "async_tests/test_list_sessions_async.py",
]
# The administration API's tests.  They delete every queue and topic of the namespace before they
# start, so each file runs on an emulator of its own (see :func:`execute_management`).
MANAGEMENT_FILES = [
    "mgmt_tests/test_mgmt_namespaces.py", "mgmt_tests/test_mgmt_queues.py", "mgmt_tests/test_mgmt_topics.py",
    "mgmt_tests/test_mgmt_subscriptions.py", "mgmt_tests/test_mgmt_rules.py",
    "mgmt_tests/test_topic_filter_counts_live.py",
    "mgmt_tests/async/test_mgmt_namespaces_async.py", "mgmt_tests/async/test_mgmt_queues_async.py",
    "mgmt_tests/async/test_mgmt_topics_async.py", "mgmt_tests/async/test_mgmt_subscriptions_async.py",
    "mgmt_tests/async/test_mgmt_rules_async.py",
]

# Tests that cannot apply to this emulator, by pattern over the node id, and why (README, "What
# is not supported").  They are not run and not counted.
NOT_APPLICABLE: list[tuple[str, str]] = [
    (r"websocket|-ws\]|\[ws-|AmqpOverWebsocket"
     # these three send with transport_type=TransportType.AmqpOverWebsocket
     r"|test_(async_)?queue_send_(large_message_receive|timeout|twice)\[",
     "AMQP over WebSockets: the emulator speaks AMQP over TCP only (README: WebSockets not supported)"),
    (r"test_sb_client_(readonly|writeonly)_credentials|test_sb_client_bad_credentials"
     r"|test_sb_client_incorrect_queue_conn_str|test_azure_named_key_credential"
     r"|test_(async_)?mgmt_queue_list_with_negative_credential",
     "authorization: the emulator accepts every token and key (README: no real authorization), "
     "so a refusal for missing rights or a wrong key cannot happen"),
    (r"test_sb_client_bad_entity",
     "authorization: the test expects the Entra ID token for a missing entity to be refused at put-token "
     "(ServiceBusAuthenticationError); the emulator accepts every token (README: no real authorization) and "
     "reports the missing entity when the link attaches (MessagingEntityNotFoundError), as for a SAS key"),
    (r"test_sb_client_with_ssl_context|test_queue_message_http_proxy_setting"
     r"|test_custom_endpoint_connection_verify_exception",
     "TLS / HTTP proxy: the emulator speaks plain AMQP on loopback (README: no TLS)"),
]

# Failures that are defects of the suite at this version, not of the emulator: the test's node id,
# the error that shows it (matched against the failure's first line), and why.
SUITE_DEFECTS: list[tuple[str, str, str]] = [
    (r"test_(async_)?queue_operation_negative\[", r"await_outcome",
     "the test monkeypatches the SDK's message completion with a function that does not take the "
     "'await_outcome' keyword the 7.15.0 SDK passes (TypeError in the test's own _hack_amqp_message_complete)"),
    (r"test_async_queue_message_batch_large\[", r"not natively supported",
     "an 'async def' test without @pytest.mark.asyncio: pytest (with or without pytest-asyncio in strict "
     "mode) does not run it"),
    (r"test_(async_)?next_available_session_timeout_value\[", r"\) > 65$",
     "the test expects receive_messages(max_wait_time=5) on a next-available receiver built with "
     "max_wait_time=70 to wait more than 65 s, but the 7.15.0 SDK bounds the link's open by the receive's own "
     "5 s (ServiceBusReceiver._receive opens with get_attempt_timeout(wait_time, try_timeout), and "
     "check_link_ready_deadline raises OperationTimeoutError 'Timed out waiting for the AMQP link to open.' "
     "on the client, before the service answers); no service can make it wait longer"),
    # The suite skips these as "Pending management apis"; the runner runs them (conformance_plugin).
    (r"test_(topic|subscription)_by_servicebus_client_list_(topics|subscriptions)\[",
     r"missing 2 required positional arguments: 'fully_qualified_namespace' and 'credential'",
     "written for the 0.50 SDK: ServiceBusClient(service_namespace=..., shared_access_key_name=...) and "
     "client.list_topics()/list_subscriptions() do not exist in 7.x (listing entities is "
     "ServiceBusAdministrationClient's, which mgmt_tests cover)"),
]


# Tests that take longer than the per-test timeout by design, against Azure as against the
# emulator, by test function: the seconds they get instead, and why.
LONG_RUNNING: dict[str, tuple[int, str]] = {
    "test_topic_by_servicebus_client_send_large_messages_w_sleep": (720,
     "10 sends of 100 KB, 10 s apart, on a sender built with socket_timeout=60: from 30 s after the open the "
     "SDK's keep-alive thread (pyamqp client._keep_alive) holds the connection's socket lock in a read that waits "
     "up to socket_timeout for a frame, and a service sends nothing to an idle sender (the trace in "
     "Azure/azure-sdk-for-python#37916 shows the same 60 s gaps against Azure), so each later send waits up to "
     "60 s for the lock: about 470 s in all"),
}


def file_timeout(run: "FileRun", timeout: int) -> int:
    """The per-test timeout for ``run``'s process: ``timeout``, or more if one of its tests needs it."""
    return max([timeout, *(LONG_RUNNING[name][0] for name in map(function_of, run.nodeids) if name in LONG_RUNNING)])


def function_of(nodeid: str) -> str:
    """``file::Class::test_x[param]`` -> ``test_x``."""
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def suite_defect(nodeid: str, detail: str) -> str | None:
    """Why a failure is the suite's own, if it is one of the known defects and fails as they do."""
    for pattern, evidence, reason in SUITE_DEFECTS:
        if re.search(pattern, nodeid) and re.search(evidence, detail.strip()):
            return reason
    return None


@dataclass
class FileRun:
    path: str
    nodeids: list[str]
    results: dict[str, dict[str, object]] = field(default_factory=dict)


def sdist() -> Path:
    WORK.mkdir(exist_ok=True)
    archive = WORK / SDIST
    if not archive.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"azure-servicebus=={SDK_VERSION}", "-d", str(WORK)], check=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        raise SystemExit(f"conformance: {SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}; removed it")
    return archive


def extract(archive: Path) -> Path:
    target = WORK / f"azure-servicebus-{SDK_VERSION}"
    if target.exists():
        shutil.rmtree(target)
    prefix = f"azure_servicebus-{SDK_VERSION}/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()
                   and not m.name.endswith("/servicebus_preparer.py") and "/perf_tests/" not in m.name]
        for member in members:
            member.name = member.name[len(f"azure_servicebus-{SDK_VERSION}/"):]
            tar.extract(member, target, filter="data")
    # The suite's settings, not this project's pyproject (which would add --strict-markers etc.).
    (target / "tests" / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return target / "tests"


def pytest_env(results: Path | None = None, entities: Path | None = None, port: int = 0,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CONFORMANCE_SB_PORT"] = str(port)
    env.pop("CONFORMANCE_RESULTS", None)
    env.pop("CONFORMANCE_ENTITIES_OUT", None)
    if results:
        env["CONFORMANCE_RESULTS"] = str(results)
    if entities:
        env["CONFORMANCE_ENTITIES_OUT"] = str(entities)
    return env


def collect(tests: Path, files: list[str]) -> tuple[dict[str, object], list[str]]:
    out = WORK / "entities.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "conformance_plugin",
                           *files], cwd=tests, env=pytest_env(entities=out), capture_output=True, text=True)
    if not out.exists():
        raise SystemExit(f"conformance: collection failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    found = json.loads(out.read_text())
    return found["config"], found["tests"]


def not_applicable(nodeid: str) -> str | None:
    for pattern, reason in NOT_APPLICABLE:
        if re.search(pattern, nodeid, re.IGNORECASE):
            return reason
    return None


def run_file(tests: Path, run: FileRun, port: int, timeout: int, log: Path,
             extra: dict[str, str] | None = None) -> subprocess.Popen[bytes] | None:
    remaining = [n for n in run.nodeids if n not in run.results]
    if not remaining:
        return None
    results = WORK / "results" / (run.path.replace("/", "__") + ".jsonl")
    args = [sys.executable, "-m", "pytest", "-p", "conformance_plugin", "-q", "-rN", "--no-header",
            f"--timeout={file_timeout(run, timeout)}", "--timeout-method=signal", *remaining]
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=tests, env=pytest_env(results=results, port=port, extra=extra), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def read_results(run: FileRun) -> str | None:
    """Fold the file's result log into ``run.results``; returns the node id in flight, if any."""
    path = WORK / "results" / (run.path.replace("/", "__") + ".jsonl")
    in_flight = None
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "start":
            in_flight = entry["nodeid"]
        else:
            previous = run.results.get(entry["nodeid"])
            # A failing teardown after a passing call still fails the test.
            if previous is None or previous.get("outcome") == "passed":
                run.results[entry["nodeid"]] = entry
            if entry["nodeid"] == in_flight and entry["when"] in ("call", "teardown", "setup"):
                in_flight = None if entry["when"] != "setup" or entry["outcome"] != "passed" else in_flight
    return in_flight


def start_work() -> Path:
    (WORK / "results").mkdir(exist_ok=True)
    for stale in (WORK / "results").glob("*.jsonl"):
        stale.unlink()
    log = WORK / "pytest.log"
    log.write_bytes(b"")
    return log


def management_env(emulator: ServiceBusEmulator) -> dict[str, str]:
    """What the management tests are handed (``sb_env_loader``'s settings, from the environment):
    the namespace is the administration port, and its self-signed certificate is trusted the way
    any program can be told to, by ``REQUESTS_CA_BUNDLE`` (requests) and ``SSL_CERT_FILE`` (aiohttp)."""
    address = f"127.0.0.1:{emulator.admin_port}"
    return {"SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": address,
            "SERVICEBUS_CONNECTION_STR": emulator.admin_connection_string,
            "CONFORMANCE_SB_ADMIN_PORT": str(emulator.admin_port),
            "REQUESTS_CA_BUNDLE": emulator.admin_certificate, "SSL_CERT_FILE": emulator.admin_certificate}


def execute_management(tests: Path, runs: list[FileRun], config: Path, jobs: int, timeout: int, log: Path) -> None:
    """Each file on a fresh emulator of its own: the files clear the namespace as they start."""
    for run in runs:
        with ServiceBusEmulator(config) as emulator:
            execute(tests, [run], emulator.port, jobs, timeout, log, management_env(emulator))


def execute(tests: Path, runs: list[FileRun], port: int, jobs: int, timeout: int, log: Path,
            extra: dict[str, str] | None = None) -> None:
    pending = list(runs)
    active: dict[str, tuple[FileRun, subprocess.Popen[bytes], float, str | None]] = {}
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            proc = run_file(tests, run, port, timeout, log, extra)
            if proc is not None:
                active[run.path] = (run, proc, time.monotonic(), None)
                print(f"  running {run.path} ({len(run.nodeids)} tests)", flush=True)
        time.sleep(2)
        for path, (run, proc, since, watched) in list(active.items()):
            in_flight = read_results(run)
            if proc.poll() is not None:
                del active[path]
                if in_flight is not None and in_flight not in run.results:
                    run.results[in_flight] = {"outcome": "hung", "detail": "the test process died while it ran"}
                if any(n not in run.results for n in run.nodeids):
                    pending.insert(0, run)
                continue
            if in_flight != watched:
                active[path] = (run, proc, time.monotonic(), in_flight)
            elif in_flight is not None and time.monotonic() - since > file_timeout(run, timeout) + 60:
                # pytest-timeout could not interrupt it: kill this file's process, go on without it.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                run.results[in_flight] = {
                    "outcome": "hung",
                    "detail": f"still running {file_timeout(run, timeout) + 60} s after it started; killed"}


def report(runs: list[FileRun], skipped_na: dict[str, str]) -> int:
    rows = []
    total: Counter[str] = Counter()
    for run in runs:
        for nodeid, result in run.results.items():
            reason = suite_defect(nodeid, str(result.get("detail", "")))
            if result.get("outcome") == "failed" and reason:
                result["outcome"], result["reason"] = "suite defect", reason
        counts: Counter[str] = Counter(str(r.get("outcome")) for r in run.results.values())
        counts["not applicable"] = sum(1 for n in skipped_na if n.startswith(run.path + "::"))
        total.update(counts)
        rows.append((run.path, counts))
    print()
    print("| file | passed | failed | hung | skipped by the suite | xfail by the suite | suite defect "
          "| not applicable |")
    print("|---|---|---|---|---|---|---|---|")
    for path, c in [*rows, ("**total**", total)]:
        print(f"| {path} | {c['passed']} | {c['failed']} | {c['hung']} | {c['skipped']} | {c['xfailed']} | "
              f"{c['suite defect']} | {c['not applicable']} |")
    reasons = Counter(skipped_na.values())
    if reasons:
        print("\nNot applicable (not run, not counted):")
        for reason, count in reasons.items():
            print(f"- {count}: {reason}")
    skipped = [(n, r) for run in runs for n, r in run.results.items() if r.get("outcome") == "skipped"]
    if skipped:
        print("\nSkipped by the suite itself (not counted):")
        for reason, count in Counter(str(r.get("detail")) for _, r in skipped).items():
            print(f"- {count}: {reason}")
    xfailed = [(n, r) for run in runs for n, r in run.results.items() if r.get("outcome") == "xfailed"]
    if xfailed:
        print("\nExpected failures the suite marks xfail, and failed as it expects (not counted):")
        for nodeid, result in sorted(xfailed):
            print(f"- {nodeid}: {result.get('detail')}")
    defects = [(n, r) for run in runs for n, r in sorted(run.results.items()) if r.get("outcome") == "suite defect"]
    if defects:
        print("\nDefects of the suite at this version (not counted; the evidence is the test's own error):")
        for nodeid, result in defects:
            print(f"- {nodeid}: {result['reason']}. Error: {result.get('detail', '')}")
    failures = [(n, r) for run in runs for n, r in sorted(run.results.items())
                if r.get("outcome") in ("failed", "hung")]
    if failures:
        print("\nFailures:")
        for nodeid, result in failures:
            print(f"- {result['outcome']}: {nodeid}: {result.get('detail', '')}")
    applicable = total["passed"] + total["failed"] + total["hung"]
    print(f"\nSDK conformance: {total['passed']} passed of {applicable} applicable")
    return 0 if total["failed"] + total["hung"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4,
                        help="test files run at once (default 4: the tests mostly wait, on the broker or a sleep)")
    parser.add_argument("--timeout", type=int, default=420,
                        help="seconds per test (default 420: some tests sleep 305 s)")
    parser.add_argument("-k", dest="select", default=None, help="only node ids matching this regular expression")
    parser.add_argument("files", nargs="*", help="only these files of the suite (default: all messaging files)")
    parser.add_argument("--work-dir", default=None, help="where the suite is extracted and run (default .conformance)")
    args = parser.parse_args(argv)
    if args.work_dir:
        global WORK
        WORK = Path(args.work_dir).resolve()

    tests = extract(sdist())
    files = args.files or MESSAGING_FILES + MANAGEMENT_FILES
    config, nodeids = collect(tests, files)
    if args.select:
        nodeids = [n for n in nodeids if re.search(args.select, n)]
    skipped_na = {n: r for n in nodeids if (r := not_applicable(n)) is not None}
    config_path = WORK / "servicebus-config.json"
    config_path.write_text(json.dumps(config, indent=1))
    runs = [FileRun(f, [n for n in nodeids if n.startswith(f + "::") and n not in skipped_na]) for f in files]
    print(f"conformance: azure-servicebus {SDK_VERSION} tests ({len(nodeids)} collected, "
          f"{len(skipped_na)} not applicable), per-test timeout {args.timeout} s", flush=True)
    for name in sorted({function_of(n) for n in nodeids} & LONG_RUNNING.keys()):
        print(f"  {LONG_RUNNING[name][0]} s for {name}: {LONG_RUNNING[name][1]}", flush=True)
    log = start_work()
    messaging = [r for r in runs if r.nodeids and not r.path.startswith("mgmt_tests/")]
    if messaging:
        with ServiceBusEmulator(config_path) as emulator:
            execute(tests, messaging, emulator.port, args.jobs, args.timeout, log)
    management = [r for r in runs if r.nodeids and r.path.startswith("mgmt_tests/")]
    execute_management(tests, management, config_path, args.jobs, args.timeout, log)
    return report(runs, skipped_na)


if __name__ == "__main__":
    sys.exit(main())
