"""Regenerate the README's screenshot of the live page: docs/dashboard.png (three demo models, in
headless Chromium). The README's report charts (docs/report-drift.png, docs/report-accuracy.png)
come from the demo's simulated day: tests/demo/test_day.py regenerates them.

    python tests/dashboard/make_docs.py [--out docs]

Uses the same real monitored run as the tests (scenario.py): the three email-product models,
two worker processes, delayed ground truth and an out-of-domain drift phase at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.dashboard.helpers import FLAGS, start_server, stop  # noqa: E402

from leanml.dashboard import build_report  # noqa: E402
from leanml.registry import ModelRegistry  # noqa: E402

MODELS = "email,intent,sentiment"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE.parent.parent / "docs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, base = start_server(
            "live_server.py", work, "--models", MODELS, "--token", "t", "--interval", "1.0"
        )
        try:
            time.sleep(20)  # let the live series gather a few points
            with sync_playwright() as p:
                ctx = p.chromium.launch_persistent_context(
                    str(work / "profile"),
                    executable_path="/usr/bin/chromium",
                    args=FLAGS,
                    headless=True,
                    viewport={"width": 1400, "height": 1000},
                )
                page = ctx.new_page()
                page.goto(base + "/dashboard/")
                page.locator(".chart[data-ready=drawn]").nth(8).wait_for()
                page.screenshot(path=str(args.out / "dashboard.png"), full_page=True)
                ctx.close()
        finally:
            stop(proc)
        rep = build_report(
            f"sqlite:///{work / 'store.db'}",
            work / "report",
            registry=ModelRegistry(work / "models"),
            since=time.time() - 3 * 3600,
        )
        print(rep.html_path, [str(p) for p in sorted(args.out.glob("*.png"))])
        for i in rep.insights:
            print("-", i.text)


if __name__ == "__main__":
    main()
