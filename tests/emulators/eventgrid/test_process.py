"""The emulator as a process: the shipped default config, durability across SIGKILL,
clean shutdown on SIGTERM, and exit status 2 with one line for a malformed config."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from .conftest import (
    DEADLINE,
    EG_KEY,
    EG_TOPIC,
    REPO_ROOT,
    EmulatorProcess,
    default_test_topics,
    unique,
    wait_until,
    write_config,
)


def test_default_config_serves_deliveries_payments_and_storage(tmp_path):
    proc = EmulatorProcess(["--in-memory", "--port", "0"], tmp_path / "emulator.log").start()
    try:
        topics = requests.get(proc.url("/topics"), timeout=10).json()
        assert [(t["name"], t["inputSchema"], t["subscriptions"]) for t in topics] == [
            ("deliveries", "CloudEventSchemaV1_0", []),
            ("payments", "CloudEventSchemaV1_0", []),
            # Stands in for the storage account's system topic (devstack/storage_events.py).
            ("storage", "EventGridSchema", []),
        ]
        for topic in ("deliveries", "payments"):
            client = EventGridPublisherClient(
                proc.topic_endpoint(topic), AzureKeyCredential("local-eventgrid-key")
            )
            client.send(CloudEvent(source="/local", type=f"{topic}.Test", data={"topic": topic}))
            assert [e["type"] for e in proc.events(topic)] == [f"{topic}.Test"]
            with pytest.raises(HttpResponseError) as excinfo:
                client.send(EventGridEvent(subject="s", event_type="T", data={}, data_version="1"))
            assert excinfo.value.status_code == 400
        cleared = requests.delete(proc.url("/topics/payments/events"), timeout=10).json()
        assert cleared == {"deletedEvents": 1}
        assert proc.events("payments") == []
        assert proc.signal(signal.SIGTERM) == 0
    finally:
        proc.stop()


def test_sigint_stops_cleanly(tmp_path):
    proc = EmulatorProcess(["--in-memory", "--port", "0"], tmp_path / "emulator.log").start()
    try:
        assert proc.signal(signal.SIGINT) == 0
    finally:
        proc.stop()


def test_events_and_pending_deliveries_survive_sigkill(tmp_path, subscriber):
    gate = threading.Event()
    subscriber.route("/durable", gate=gate)
    subscriber.route("/runtime", gate=gate)
    config = write_config(
        tmp_path / "config.json",
        default_test_topics({EG_TOPIC: [{"name": "from-config", "endpoint": subscriber.url("/durable")}]}),
    )
    args = [
        "--data-dir",
        str(tmp_path / "state"),
        "--port",
        "0",
        "--config",
        str(config),
        "--retry-scale",
        "0.001",
    ]
    first = EmulatorProcess(args, tmp_path / "first.log").start()
    try:
        resp = requests.put(
            first.url(f"/topics/{EG_TOPIC}/subscriptions/added-at-runtime"),
            json={"endpoint": subscriber.url("/runtime")},
            timeout=DEADLINE,
        )
        assert resp.status_code == 201, resp.text
        etype = unique("Durable")
        events = [
            EventGridEvent(subject=f"s/{i}", event_type=etype, data={"i": i}, data_version="1")
            for i in range(3)
        ]
        EventGridPublisherClient(first.topic_endpoint(EG_TOPIC), AzureKeyCredential(EG_KEY)).send(events)
        # Kill while attempts are in flight (held at the gate), so nothing has been acknowledged.
        subscriber.wait_notifications("/durable", 1)
        first.proc.kill()
        first.proc.wait(timeout=DEADLINE)
    finally:
        first.stop()
    gate.set()
    before_restart = {p: len(subscriber.notifications(p)) for p in ("/durable", "/runtime")}

    second = EmulatorProcess(args, tmp_path / "second.log").start()
    try:
        names = [
            s["name"]
            for s in requests.get(second.url(f"/topics/{EG_TOPIC}/subscriptions"), timeout=10).json()
        ]
        assert names == ["from-config", "added-at-runtime"]

        def all_delivered() -> list[dict] | None:
            listed = second.events(EG_TOPIC, type=etype)
            states = [d["status"] for e in listed for d in e["deliveries"]]
            return listed if len(states) == 6 and set(states) == {"delivered"} else None

        listed = wait_until(all_delivered, "every delivery to complete after the restart")
        assert [e["id"] for e in listed] == [str(e.id) for e in events]
        for path in ("/durable", "/runtime"):
            after = {n.json[0]["id"] for n in subscriber.notifications(path)[before_restart[path] :]}
            # At-least-once: whatever was unacknowledged at the kill is delivered by the new process.
            assert after, f"nothing re-delivered to {path}"
            delivered = {n.json[0]["id"] for n in subscriber.notifications(path)}
            assert delivered == {str(e.id) for e in events}
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{ not json", "not valid JSON"),
        (json.dumps({"topics": []}), "'topics' must be a non-empty array"),
        (json.dumps({"topics": [{"name": "t1x", "inputSchema": "Custom", "keys": ["k"]}]}), "inputSchema"),
        (json.dumps({"topics": [{"name": "t1x", "keys": []}]}), "keys"),
        (
            json.dumps(
                {
                    "topics": [
                        {"name": "t1x", "keys": ["k"], "subscriptions": [{"name": "s1x", "endpoint": "nope"}]}
                    ]
                }
            ),
            "topics[0].subscriptions[0].endpoint",
        ),
        (json.dumps({"topics": [{"name": "t1x", "keys": ["k"], "subscription": []}]}), "unknown key"),
        (
            json.dumps({"topics": [{"name": "dup", "keys": ["k"]}, {"name": "DUP", "keys": ["k"]}]}),
            "duplicate",
        ),
        (None, "cannot read"),
    ],
)
def test_malformed_config_exits_2_with_one_line(tmp_path, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "emulators.eventgrid", "--in-memory", "--port", "0", "--config", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "config" in lines[0]
    assert result.stdout == ""
