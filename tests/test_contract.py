"""Contract tests: Schemathesis' command line against the API served over HTTP, as a client meets it.

Every check Schemathesis has, on every operation, in positive and negative modes: no server
error, statuses, content types and bodies as documented, valid data accepted, invalid data
refused, 405 with Allow for methods an operation does not have.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from readnext.config import PROJECT_ROOT

# A bounded run for CI; CONTRACT_EXAMPLES=200 CONTRACT_SEED=<n> explores further.
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "25"))
SEED = os.environ.get("CONTRACT_SEED", "1")


def test_every_operation_keeps_its_contract(served, tmp_path: Path):
    """As a trusted back end: a service key that may read and write for every reader (checks without it too)."""
    key = served.key("readers:read", "ratings:write")
    server = make_server("127.0.0.1", 0, served.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"http://127.0.0.1:{server.server_port}/api/v1/openapi.json",
                "--checks",
                "all",
                "--mode",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                SEED,
                "--header",
                f"Authorization: {key['Authorization']}",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract_hooks", "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        server.shutdown()
    report = run.stdout[-12000:]
    assert run.returncode == 0, report
    assert "13 operations" in report or "13/13" in report, report


def test_every_operation_is_documented_and_self_contained(served):
    document = served.client.get("/api/v1/openapi.json").get_json()
    assert len(document["paths"]) == 13
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "https://readnext" not in str(document), "no external $ref"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert {"400", "404", "503"} <= set(answers), f"{method} {path}"
            documented = [a for code, a in answers.items() if code != "204"]
            assert all("schema" in a["content"]["application/json"] for a in documented), f"{method} {path}"
            if "security" in operation:
                assert {"401", "403"} <= set(answers), f"{method} {path}"
