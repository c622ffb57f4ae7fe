"""The live view in a real headless Chromium (Debian's, driven by Playwright): the page follows a
delivery to ``Shipped`` without a reload, shows its whole journey, lists a dead letter with its
reason and resubmits it after a confirmation; its event stream comes back after the view restarts.

Screenshots go to the test's tmp dir; with ``VIEW_SCREENSHOTS=DIR`` they are copied there too
(``docs/`` holds the README's)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from choreography.entities import INPUT_CONTAINER
from devstack.stack import ROOT
from ops import journey
from ops.sources import StoreApi

from .conftest import App, call, delivery, start_stack, trace_of

SAMPLE = ROOT / "devstack" / "samples" / "payments" / "csv_v1_valid.csv"
WAIT_MS = 60_000  # generous: a loaded shared machine is slow, never wrong


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    # A flight of a few seconds, so the page has time to show the delivery in transit.
    stack = start_stack(with_view=True, FLIGHT_TIME_SECONDS="3", REMEDIATION_MAX_ATTEMPTS="1",
                        REMEDIATION_RETRY_BASE_SECONDS="1")
    try:
        yield App(stack)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed: run `make venv` (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def page(browser: Browser, app: App) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    opened = context.new_page()
    opened.goto(app.stack.view_url)
    # Set once: still there at the end only if the page was never reloaded.
    opened.evaluate("window.loadedOnce = true")
    expect(opened.locator("#connection")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    try:
        yield opened
    finally:
        context.close()


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("VIEW_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["VIEW_SCREENSHOTS"]) / name)


def test_the_page_follows_a_delivery_to_shipped_and_shows_its_journey(app: App, page: Page, tmp_path: Path) -> None:
    expect(page.locator("#map svg")).to_be_visible(timeout=WAIT_MS)  # Mermaid, served from the repo
    body = delivery()
    key = body["deliveryId"]
    # Every status the row shows, as the page redraws it (no polling from the test).
    page.evaluate("""key => {
        window.seen = [];
        new MutationObserver(() => {
            const row = document.querySelector(`#deliveries tr[data-key="${key}"]`);
            if (row && window.seen[window.seen.length - 1] !== row.dataset.status) window.seen.push(row.dataset.status);
        }).observe(document.querySelector("#deliveries tbody"), {childList: true, subtree: true});
    }""", key)
    assert app.submit(body)[0] == 202

    row = page.locator(f'#deliveries tr[data-key="{key}"]')
    expect(row).to_have_attribute("data-status", "Shipped", timeout=WAIT_MS)
    seen = page.evaluate("window.seen")
    assert seen[-1] == "Shipped" and len(seen) >= 2, seen  # it moved there on the page
    assert page.evaluate("window.loadedOnce") is True  # ...without a reload

    last_hops = {"notifications_on_delivery_event", "drone_scheduler_on_release_drone"}
    assert trace_of(app.stack, key, lambda spans: last_hops <= {x.attributes.get("faas.name") for x in spans})
    expected = [journey.describe(span) for span, _ in journey.hop_tree(journey.find(StoreApi(app.stack.traces_url),
                                                                                    key))]
    row.click()
    timeline = page.locator("#journey")
    expect(page.locator("#journey-key")).to_have_text(key)
    for hop in expected:
        expect(timeline).to_contain_text(hop, timeout=WAIT_MS)
    assert page.locator("#journey li").count() == len(expected)
    screenshot(page, tmp_path, "live-view-journey.png")


def test_the_page_shows_a_payment_file_through_the_pipeline(app: App, page: Page) -> None:
    name = f"view-{uuid.uuid4().hex[:8]}.csv"
    with BlobServiceClient.from_connection_string(app.stack.storage_connection) as blobs:
        blobs.get_container_client(INPUT_CONTAINER).upload_blob(f"ACME001/{name}", SAMPLE.read_bytes())
    row = page.locator("#files tbody tr", has_text=f"ACME001/{name}")
    expect(row).to_have_attribute("data-status", "Completed", timeout=WAIT_MS)
    expect(row).to_contain_text("ACCP")
    row.click()  # its journey, by file id: from the upload to PaymentFileCreated
    expect(page.locator("#journey")).to_contain_text("file_pipeline_validate", timeout=WAIT_MS)
    expect(page.locator("#journey")).to_contain_text("PaymentFileCreated", timeout=WAIT_MS)


def test_a_dead_letter_appears_with_its_reason_and_is_resubmitted_after_confirmation(app: App, page: Page,
                                                                                     tmp_path: Path) -> None:
    correlation = f"view-{uuid.uuid4().hex[:12]}"
    with ServiceBusClient.from_connection_string(app.stack.servicebus_connection) as client, \
            client.get_topic_sender("deliveries") as sender:
        sender.send_messages(ServiceBusMessage(b"{not json", message_id=f"garbage-{correlation}",
                                               subject="DeliveryRequested", correlation_id=correlation))
    letters = page.locator("#deadletters tbody tr", has_text=correlation)
    expect(letters.first).to_contain_text("MalformedMessage", timeout=WAIT_MS)
    expect(letters.first).to_contain_text("parked")
    expect(page.locator("#dl-counts")).to_contain_text("MalformedMessage")
    # Per entity, from the administration API: each forwards its dead letters, so its own queue is empty.
    expect(page.locator("#dl-counts .entities")).to_contain_text("own dead-letter queues: empty")
    expect(page.locator("#warnings")).not_to_contain_text("administration API")
    # The delivery the unreadable request named: its journey marks the dead letters.
    page.locator(f'#deliveries tr[data-key="{correlation}"]').click()
    expect(page.locator("#journey li.dead").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#journey")).to_contain_text("dead-lettered MalformedMessage")
    screenshot(page, tmp_path, "live-view.png")

    letter = letters.first
    letter_id = letter.get_attribute("data-id")
    dialogs: list[tuple[str, bool]] = []
    accept = False

    def answer(dialog: Dialog) -> None:
        dialogs.append((dialog.type, accept))
        if accept or dialog.type == "alert":
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    row = page.locator(f'#deadletters tr[data-id="{letter_id}"]')
    row.get_by_role("button", name="resubmit").click()
    assert dialogs == [("confirm", False)]
    pictures = page.evaluate("window.pictures")
    page.wait_for_function(f"window.pictures >= {pictures + 2}", timeout=WAIT_MS)
    expect(row).not_to_contain_text("resubmitted")  # declined: nothing was sent

    accept = True
    row.get_by_role("button", name="resubmit").click()
    expect(row).to_contain_text("resubmitted", timeout=WAIT_MS)
    assert dialogs[1:] == [("confirm", True), ("alert", True)]
    expect(row.get_by_role("button", name="resubmit")).to_have_count(0)


def test_the_resubmit_api_wants_the_confirmation_too(app: App) -> None:
    url = f"{app.stack.view_url}api/deadletters/some-id/resubmit"
    status, problem, headers = call("POST", url, raw=b"{}")
    assert status == 400 and headers["Content-Type"] == "application/problem+json", problem
    status, problem, _ = call("POST", url, raw=b'{"confirm": "some-id"}')
    assert status == 404 and "no dead letter" in problem["detail"], problem


def test_the_page_reconnects_after_the_view_restarts(app: App, page: Page) -> None:
    before = page.locator("#updated").inner_text()
    app.stack.stop_view()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
    app.stack.start_view()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    body = delivery()
    assert app.submit(body)[0] == 202
    expect(page.locator(f'#deliveries tr[data-key="{body["deliveryId"]}"]')).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#updated").inner_text() != before
    assert page.evaluate("window.loadedOnce") is True
