"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright loads
/dashboard from a running server (live monitors, real models, traffic), waits for the charts,
checks model names and health badges, switches a variant through the admin form, finds no
console errors and no injected markup, and saves a screenshot."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from .helpers import FLAGS, assert_valid_png, start_server, stop

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)
XSS_NAME = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)


def test_dashboard_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (PyPI) is not installed"
    )
    proc, base = start_server("live_server.py", tmp_path, "--xss", "--token", "tok")
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh user-data-dir
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
            )
            page = ctx.new_page()
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(base + "/dashboard/")
            # 3 charts per model, each drawn from the polled series (locator waits: the page's
            # CSP forbids the eval that wait_for_function would need)
            page.locator(".chart[data-ready=drawn]").nth(5).wait_for(timeout=30_000)
            names = page.locator(".card.model .model-name").all_text_contents()
            assert names == ["intent", XSS_NAME]  # the markup name is shown as text
            assert page.locator("img[src=x]").count() == 0
            assert page.locator("script").count() == 1  # only dashboard.js
            badges = page.locator(".card.model .badge").all()
            data = httpx.get(base + "/dashboard/data.json").json()
            want = {m["name"]: m["health"] for m in data["models"]}
            for badge, name in zip(badges, names, strict=True):
                health = badge.get_attribute("data-health")
                assert health in ("healthy", "degraded", "unhealthy")
                assert badge.text_content() == health
                assert f"badge {health}" in (badge.get_attribute("class") or "")
                assert name in want
            # the markup-named model's monitoring is paused: its card says so, intent's not
            paused = page.locator(".card.model .paused").all_text_contents()
            assert paused == ["monitoring paused: predictions are served but not recorded"]
            assert data["models"][1]["paused"] and not data["models"][0]["paused"]
            # the drift phase of the history left the intent model with active alerts
            assert page.locator("#alerts tr").count() >= 1
            # admin switch through the page, with the token
            page.fill("#token", "tok")
            card = page.locator(".card.model", has_text="intent").first
            card.locator("select").select_option("compact")
            card.locator("button").click()
            page.locator(".admin .muted", has_text="switched to compact").wait_for(timeout=15_000)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            ctx.close()
        assert_valid_png(shot.read_bytes())
        assert problems == [], problems
    finally:
        stop(proc)
