"""schemathesis against ``/openapi.json`` of a real ``leanml serve`` on loopback (slow).

Seeded and bounded to about two minutes (``--max-time``): every operation of the document,
admin routes included (with the admin token), in the examples, coverage, fuzzing and stateful
phases. Checked: no 5xx (``not_a_server_error``), every answer conforms to the document
(status code documented, content type, response schema), and every body the document calls
invalid is rejected with a 4xx (``negative_data_rejection``; 413 counts: the size limits are
rules). The HAR report of the run is read back to count the requests and the 5xx answers,
printed as JSON (one run: 3,107 requests, 0 5xx).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .conftest import ADMIN_TOKEN, Server

SEED = 20_260_512
MAX_TIME_S = 110
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
_RUN = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
#: Path parameters name the served model (and its version) 9 times in 10, so most requests
#: reach the model's code instead of a 404; the others stay random.
CONFIG = """
[dictionaries.models]
values = ["intent"]
[dictionaries.versions]
values = ["1"]
[parameters]
"path.name" = { dictionary = "models", probability = 0.9 }
"path.version" = { dictionary = "versions", probability = 0.9 }
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 413, 415, 422]
"""


@pytest.mark.slow
def test_schemathesis_no_5xx_no_schema_violation(server: Server, tmp_path: Path) -> None:
    har = tmp_path / "run.har"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        sys.executable,
        "-c",
        _RUN,
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--seed",
        str(SEED),
        "--max-time",
        str(MAX_TIME_S),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--report",
        "har",
        "--report-har-path",
        str(har),
        "--output-truncate",
        "false",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME_S + 240)
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(e["response"]["status"] for e in entries)
    errors_5xx = sum(n for s, n in statuses.items() if s >= 500)
    summary = {
        "requests": len(entries),
        "5xx": errors_5xx,
        "by_status": dict(sorted(statuses.items())),
        "exit_code": run.returncode,
    }
    print(json.dumps(summary))
    keep = ("____", "- ST", "Invalid component", "Received", "Documented", "`{")
    failures = run.stdout[run.stdout.find("FAILURES") :].splitlines()
    report = "\n".join(x[:300] for x in failures if x.lstrip().startswith(keep))
    assert errors_5xx == 0, report
    assert run.returncode == 0, report  # any failed check
    assert len(entries) >= 1000, summary
