"""The dashboard page in a real headless Chromium, driven over the DevTools
protocol: it shows the counts, failures, dead letters, paused types and blocked
chains of a real store, and its Retry button sends a dead-lettered job back to
`scheduled`. Screenshots go to artifacts/ (kept as test artifacts)."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

import gq
from cdp import Browser, find_chromium
from worker_harness import wait_all, wait_state

CHROMIUM = find_chromium()


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        why = ("no chromium on PATH (Debian package `chromium`, or set GQ_CHROMIUM): the "
               "dashboard test needs a real headless browser")
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the dashboard test: {why}; .ci/run installs it with "
                        "ci/chromium.sh")
        pytest.skip(why)
    return CHROMIUM

ARTIFACTS = os.environ.get("GQ_ARTIFACTS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "artifacts")


def stocked_queue(q):
    """A store with something in every panel of the page."""
    @q.handler("email.send")
    async def send(job):
        return {"sent": True}

    @q.handler("payment.capture", max_attempts=1)
    async def capture(job):
        raise gq.TemporaryError("provider returned 503")

    @q.handler("invoice.parse")
    async def parse(job):
        raise gq.PermanentError("invoice has no 'total' field")

    done = [q.submit("email.send", {"to": f"u{i}@example.com"}) for i in range(12)]
    dead = q.submit("payment.capture", {"amount": 42})
    failed = q.submit("invoice.parse", {})
    gone = q.submit("report.build", delay=3600)
    q.cancel(gone)
    middle = q.submit("report.build", depends_on=[gone])
    last = q.submit("report.publish", depends_on=[middle])
    return done, dead, failed, last


def test_dashboard_in_headless_chromium(make_queue, serve, tmp_path, chromium):
    q = make_queue()
    done, dead, failed, blocked = stocked_queue(q)
    api = serve(q)
    wait_all(q, done, "completed")
    wait_state(q, dead, "dead_letter")
    wait_state(q, failed, "failed")
    q.pause("payment.capture")      # a retried job then stays scheduled, for us to see
    shot_before = os.path.join(ARTIFACTS, "dashboard.png")
    shot_after = os.path.join(ARTIFACTS, "dashboard-after-retry.png")

    async def drive():
        browser = Browser(chromium, str(tmp_path / "profile"))
        try:
            async with aiohttp.ClientSession() as session:
                page = await browser.page(session)
                await page.goto(api.base + "/")
                await page.wait_for("!!document.body && document.body.dataset.loaded === '1'",
                                    20, "the page's first load of the API")
                await page.wait_for("document.getElementById('throughput').textContent"
                                    ".includes('jobs/s')", 10, "a throughput figure")
                text = await page.eval("document.body.innerText")
                card = await page.eval("document.querySelector('.card.completed b')"
                                       ".textContent")
                await page.screenshot(shot_before)
                await page.click(f'button.retry[data-id="{dead}"]')
                await page.wait_for(
                    f"!document.querySelector('button.retry[data-id=\"{dead}\"]')", 10,
                    "the retried job to leave the dead-letter list")
                after = await page.eval("document.body.innerText")
                await page.screenshot(shot_after)
                await page.close()
                return text, card, after
        finally:
            browser.close()

    text, completed_card, after = asyncio.run(drive())
    assert completed_card == "12"
    assert "ready" in text
    assert "email.send" in text and "payment.capture" in text
    assert "provider returned 503" in text and "temporary" in text     # recent failures
    assert "invoice has no 'total' field" in text and "permanent" in text
    assert "Paused types: payment.capture" in text
    assert "never completes" in text                                   # blocked chain
    assert q.get(blocked).state is gq.State.PENDING
    # the click went through the API: the job is back to scheduled, attempts reset
    job = q.get(dead)
    assert job.state is gq.State.SCHEDULED and job.attempts == 0
    assert "dead letter is empty" in after
    for shot in (shot_before, shot_after):
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
