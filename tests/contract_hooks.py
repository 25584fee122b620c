"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS=tests.contract_hooks)."""

from __future__ import annotations

from datetime import datetime

import schemathesis

from readnext.events import EARLIEST_TS_MS, MAX_FUTURE_SKEW_MS, now_ms


@schemathesis.hook
def filter_case(context, case):
    """A valid `ts` also lies no more than the schema's skew ahead of the clock: a rule that moves with
    time, which JSON Schema cannot state. Positive cases beyond it are not valid data, so they are not
    sent as such; tests/test_api.py checks that such events are refused.
    """
    body = case.body
    if not case.meta or not case.meta.generation.mode.is_positive or not isinstance(body, dict):
        return True
    ts = body.get("ts")
    if isinstance(ts, str):
        try:
            ts = int(datetime.fromisoformat(ts.upper().replace("Z", "+00:00")).timestamp() * 1000)
        except (ValueError, OverflowError):
            return True
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return True
    return EARLIEST_TS_MS <= ts <= now_ms() + MAX_FUTURE_SKEW_MS
