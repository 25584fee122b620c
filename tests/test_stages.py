"""Stage lines of a batch run: start, end with counts, and progress with the time left on long stages."""

from __future__ import annotations

import json
import logging
import time

from batch_layer import stages


def test_a_long_stage_reports_progress_and_time_left_from_the_last_run(tmp_path, monkeypatch, caplog):
    history = tmp_path / "stage-seconds.json"
    history.write_text(json.dumps({"train ALS": 30.0}))
    monkeypatch.setattr(stages, "PROGRESS_S", 0.2)
    monkeypatch.setattr(stages, "HISTORY", history)
    caplog.set_level(logging.INFO, logger="batch_layer")
    with stages.stage("train ALS") as done:
        time.sleep(0.7)
        done({"books": 3})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("batch_layer")]  # not other threads' logs
    assert lines[0] == "stage train ALS: start "
    progress = [line for line in lines if "s left (last run: 30 s)" in line]
    assert len(progress) >= 2, lines
    assert lines[-1].startswith("stage train ALS: end in 0.7 s {'books': 3}")
    assert 0.6 < json.loads(history.read_text())["train ALS"] < 1.5, "this run's duration is kept for the next"
