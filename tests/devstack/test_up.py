"""``make up`` (``python -m devstack up``) leaves the topology in place: a payment file dropped
into ``payment-files-in`` straight after it is up, without creating anything first (as a
newcomer does with Storage Explorer or the SDK), is picked up and processed."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from choreography.entities import CONTAINERS, INPUT_CONTAINER, TABLES
from devstack.stack import ROOT, ManagedProcess

SAMPLE = ROOT / "devstack" / "samples" / "payments" / "csv_v1_valid.csv"


def _status(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_a_file_dropped_right_after_make_up_is_processed(tmp_path: Path) -> None:
    up = ManagedProcess("up", [sys.executable, "-m", "devstack", "up", "--in-memory", "--free-ports"]).start()
    try:
        up.wait_for_line(r"Local stack is up", 240)
        output = "\n".join(up.lines)
        functions = re.search(r"Functions \(devhost\)\s+(http://127\.0\.0\.1:\d+)", output)
        storage = re.search(r"AzureWebJobsStorage=(\S+)", output)
        assert functions and storage, output

        with BlobServiceClient.from_connection_string(storage.group(1)) as blobs:
            assert {c.name for c in blobs.list_containers()} >= set(CONTAINERS)
            name = f"up-{uuid.uuid4().hex[:8]}.csv"
            # No create_container: the container must already be there.
            blobs.get_blob_client(INPUT_CONTAINER, f"ACME001/{name}").upload_blob(SAMPLE.read_bytes())
        with TableServiceClient.from_connection_string(storage.group(1)) as tables:
            assert {t.name for t in tables.list_tables()} >= set(TABLES)

        deadline = time.monotonic() + 180
        body: Any = None
        while time.monotonic() < deadline:
            code, body = _status(f"{functions.group(1)}/api/payment-files/ACME001/{name}")
            if code == 200 and body["state"] in ("Completed", "Rejected"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the dropped file was not processed: {body}\n{up.tail(40)}")
        assert body["fileName"] == name or name in json.dumps(body)
        view = re.search(r"Live view\s+(http://127\.0\.0\.1:\d+/)", output)
        assert view, output
        code, picture = _status(f"{view.group(1)}api/state")  # the page's data, with the file in it
        assert code == 200 and name in json.dumps(picture["files"]), picture
    finally:
        assert up.stop(timeout=60) is not None
