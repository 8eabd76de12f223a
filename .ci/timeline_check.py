#!/usr/bin/env python3
"""Checks a Chrome trace-event JSON file written by orchestrator-timeline.

The checks are the trace-event format's (the JSON Object Format: a `traceEvents` array whose
events have a name, a phase, a pid and a tid, microsecond timestamps, a duration for complete
events, a scope for instant events), then what the example's run must contain: five job
slices with their outcomes, one retry, four states. Exits 1 with the reason otherwise.
"""
import json
import sys

PHASES = {"X", "i", "M"}


def fail(why):
    print(f"timeline trace: {why}", file=sys.stderr)
    sys.exit(1)


def main(path):
    with open(path, encoding="utf-8") as f:
        trace = json.load(f)
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        fail("not a JSON object with a traceEvents array")
    if trace.get("displayTimeUnit") not in ("ms", "ns"):
        fail("displayTimeUnit must be ms or ns")
    events = trace["traceEvents"]
    for e in events:
        for key in ("name", "ph", "pid", "tid"):
            if key not in e:
                fail(f"an event without {key}: {e}")
        if e["ph"] not in PHASES:
            fail(f"an unexpected phase: {e}")
        if e["ph"] in ("X", "i") and not (isinstance(e.get("ts"), int) and e["ts"] >= 0):
            fail(f"a timestamp must be a non-negative integer (microseconds): {e}")
        if e["ph"] == "X" and not (isinstance(e.get("dur"), int) and e["dur"] >= 0):
            fail(f"a complete event needs a non-negative dur: {e}")
        if e["ph"] == "i" and e.get("s") not in ("g", "p", "t"):
            fail(f"an instant event needs a scope: {e}")
    jobs = [e for e in events if e["ph"] == "X"]
    outcomes = sorted(e["args"]["outcome"] for e in jobs)
    expected = ["cancelled", "failed", "succeeded", "succeeded", "succeeded"]
    if outcomes != expected:
        fail(f"job outcomes {outcomes}, expected {expected}")
    retries = [e for e in events if e["name"] == "retry"]
    states = [e for e in events if e.get("cat") == "state"]
    if len(retries) != 1 or len(states) != 4:
        fail(f"{len(retries)} retries and {len(states)} states, expected 1 and 4")
    print(f"timeline trace: {len(events)} trace events, {len(jobs)} jobs ({', '.join(outcomes)}), "
          f"{len(retries)} retry, {len(states)} states: valid")


if __name__ == "__main__":
    main(sys.argv[1])
