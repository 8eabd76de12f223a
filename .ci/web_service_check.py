#!/usr/bin/env python3
"""Drives the web-service example (examples/web_service.rs) with a real HTTP client and in
headless Chromium.

1. HTTP (Python's urllib): POST /jobs?frames=5 answers an id; GET /jobs/<id>/events streams
   Server-Sent Events: progress reports that never go back, the last at 100 %, then `done`
   with the outcome. A bad request is refused with 400.
2. The page, through chromedriver (the W3C WebDriver client of .ci/web_example.py): a click on
   "Render 10 frames" makes a job whose progress text reaches 100 % and its outcome.
3. A screenshot of the page, and one summary line.

Every wait has an overall deadline (--timeout): a check of what happens, not of how fast.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from web_example import CheckFailed, Driver, wait_until_up  # noqa: E402


def sse_events(url, deadline):
    """Reads (event, data) pairs from a Server-Sent Events stream until a `done` event."""
    events = []
    with urllib.request.urlopen(url, timeout=max(1.0, deadline - time.monotonic())) as response:
        event, data = None, []
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
            elif line == "":
                if event is not None or data:
                    events.append((event, "\n".join(data)))
                    if event == "done":
                        return events
                event, data = None, []
            if time.monotonic() > deadline:
                break
    raise CheckFailed("the event stream ended without `done`: {}".format(events))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True, help="the example's base URL")
    parser.add_argument("--driver", required=True, help="chromedriver's URL")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--chrome-options", default="crates/orchestrator-wasm/webdriver.json")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    base = args.service.rstrip("/")
    try:
        wait_until_up(base + "/", deadline, "the web service")
        request = urllib.request.Request(base + "/jobs?frames=5", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                raise CheckFailed("POST /jobs answered {}".format(response.status))
            job = json.load(response)["id"]
        try:
            bad = urllib.request.Request(base + "/jobs?frames=lots", data=b"", method="POST")
            urllib.request.urlopen(bad, timeout=10)
            raise CheckFailed("a bad frame count was accepted")
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise CheckFailed("a bad frame count answered {}".format(error.code))
        events = sse_events("{}/jobs/{}/events".format(base, job), deadline)
        progress = [int(data.split(" ")[0]) for event, data in events if event == "progress"]
        done = [data for event, data in events if event == "done"]
        if not progress or progress != sorted(progress) or progress[-1] != 100:
            raise CheckFailed("progress {} should rise to 100".format(progress))
        if done != ["succeeded: rendered 5 frames"]:
            raise CheckFailed("outcome {}".format(done))

        with open(args.chrome_options) as f:
            chrome_args = json.load(f)["goog:chromeOptions"]["args"] + ["--window-size=800,500"]
        wait_until_up(args.driver + "/status", deadline, "chromedriver")
        driver = Driver(args.driver)
        driver.start(chrome_args)
        try:
            driver.open(base + "/")
            driver.click("#start")
            text = ""
            while time.monotonic() < deadline:
                text = driver.script("return document.getElementById('jobs').innerText") or ""
                if "100 %" in text and "succeeded: rendered 10 frames" in text:
                    break
                time.sleep(0.1)
            else:
                raise CheckFailed("the page shows {!r}".format(text))
            png = driver.screenshot()
            os.makedirs(os.path.dirname(args.screenshot) or ".", exist_ok=True)
            with open(args.screenshot, "wb") as f:
                f.write(png)
        finally:
            driver.quit()
        print("web service: {} progress events over HTTP ending at 100 %, outcome `{}`; "
              "the page reached 100 % ({}); screenshot {} ({} bytes)".format(
                  len(progress), done[0], text.strip().replace("\n", " "), args.screenshot,
                  len(png)))
    except CheckFailed as error:
        print("web service check failed: {}".format(error), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
