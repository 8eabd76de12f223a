#!/usr/bin/env python3
"""Drives the offline example (examples/offline) in headless Chromium with the network off.

The network is switched off and on with chromedriver's Chromium command for the DevTools
protocol's network conditions (`POST /session/{id}/chromium/network_conditions`, offline
true/false): the page sees `navigator.onLine` change and the `offline`/`online` events, and
its `fetch` fails while offline, as with a real outage. The page's files come from its
service worker's cache when the network is off, so it reloads offline. Steps:

1. open the page (served by .ci/offline_server.py) and wait until it is ready and its service
   worker controls it;
2. switch the network off; send "first", "second", "third": three rows, queued;
3. reload the page (still offline): the three rows are back, still queued, and the server has
   received nothing;
4. switch the network on: the rows become "sent #1", "#2", "#3", and the server received them
   in that order;
5. send "a poison pill": the server refuses it three times, and its row moves to the
   rolled-back list.

A screenshot is saved at each step (--artifacts/offline-N-<step>.png) and the rows printed.
Every wait polls the page until an overall deadline (--timeout): a check of what the page
shows, not of how fast. On failure it prints what it waited for and the page's text, and exits
with status 1. It uses the WebDriver client of .ci/web_example.py (standard library only).

    python3 .ci/offline_example.py --driver http://127.0.0.1:9515 \
        --page http://127.0.0.1:8000/ --artifacts target/artifacts
"""

import argparse
import importlib.util
import json
import os
import sys
import time
import urllib.request

_spec = importlib.util.spec_from_file_location(
    "web_example", os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_example.py")
)
web_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(web_example)
CheckFailed, Driver, wait_until_up = (
    web_example.CheckFailed,
    web_example.Driver,
    web_example.wait_until_up,
)

SNAPSHOT_SCRIPT = """
const rows = (id) => Array.from(document.querySelectorAll("#" + id + " li"))
  .map((li) => ({ cls: li.className, text: li.innerText }));
const text = (id) => { const e = document.getElementById(id); return e ? e.innerText : null; };
return {
  status: text("status"), network: text("network"), summary: text("summary"),
  rows: rows("rows"), dead: rows("rolled-back"), online: navigator.onLine,
  controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller),
  body: document.body.innerText,
};
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--driver", required=True, help="chromedriver's URL")
    parser.add_argument("--page", required=True, help="the served page's URL")
    parser.add_argument("--artifacts", required=True, help="where the screenshots go")
    parser.add_argument(
        "--chrome-options",
        default="crates/orchestrator-wasm/webdriver.json",
        help="a JSON file with goog:chromeOptions.args (the browser tests' flags)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="overall deadline, seconds")
    args = parser.parse_args()

    with open(args.chrome_options) as f:
        chrome_args = json.load(f)["goog:chromeOptions"]["args"]
    chrome_args = chrome_args + ["--window-size=820,760"]
    server = args.page.rstrip("/")
    deadline = time.monotonic() + args.timeout
    driver = Driver(args.driver)
    last = {}
    os.makedirs(args.artifacts, exist_ok=True)

    def snapshot():
        nonlocal last
        last = driver.script(SNAPSHOT_SCRIPT) or {}
        return last

    def wait_for(what, predicate):
        while True:
            try:
                if predicate(snapshot()):
                    return last
            except web_example.WebDriverError:
                pass  # the page is (re)loading
            if time.monotonic() >= deadline:
                raise CheckFailed("timed out after {:.0f} s waiting for {}".format(args.timeout, what))
            time.sleep(0.1)

    def network(offline):
        conditions = {"offline": offline, "latency": 0, "download_throughput": -1,
                      "upload_throughput": -1}
        driver.session_call("POST", "/chromium/network_conditions",
                            {"network_conditions": conditions})

    def received():
        with urllib.request.urlopen(server + "/received", timeout=10) as response:
            return json.load(response)

    def rows(s):
        return [(r["cls"], r["text"]) for r in s.get("rows", [])]

    def show(step, name):
        png = driver.screenshot()
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise CheckFailed("the screenshot is not a PNG")
        path = os.path.join(args.artifacts, "offline-{}-{}.png".format(step, name))
        with open(path, "wb") as f:
            f.write(png)
        print("step {} ({}): network {}, {}".format(step, name, last.get("network"), last.get("summary")))
        for r in last.get("rows", []) + last.get("dead", []):
            print("    [{}] {}".format(r["cls"], r["text"]))
        print("    server received: {}; screenshot {}".format(received(), path))

    def send(text):
        driver.script(
            "document.getElementById('text').value = " + json.dumps(text) + "; return 1"
        )
        driver.click("#send")

    queued = [("queued", t + " · queued") for t in ("first", "second", "third")]
    try:
        wait_until_up(args.driver + "/status", deadline, "chromedriver")
        wait_until_up(server + "/index.html", deadline, "the page server")
        driver.start(chrome_args)
        driver.open(server + "/")
        wait_for("the page to be ready and its service worker in control",
                 lambda s: (s.get("status") or "").startswith("ready") and s.get("controlled"))
        if "IndexedDB" not in last.get("status", ""):
            raise CheckFailed("the page does not keep messages in IndexedDB: " + last.get("status"))

        network(offline=True)
        wait_for("the page to see the network go", lambda s: s.get("network") == "offline")
        for text in ("first", "second", "third"):
            send(text)
        wait_for("three queued rows", lambda s: rows(s) == queued)
        show(1, "queued-offline")

        driver.script("location.reload(); return 1")
        time.sleep(0.5)  # let the old page go before looking
        wait_for("the reloaded page, offline, with the three rows still queued",
                 lambda s: (s.get("status") or "").startswith("ready") and rows(s) == queued
                 and s.get("network") == "offline")
        if "3 queued from before" not in last.get("status", ""):
            raise CheckFailed("the reloaded page did not recover three jobs: " + last.get("status"))
        if received():
            raise CheckFailed("the server received messages while offline: {}".format(received()))
        show(2, "reloaded-offline")

        network(offline=False)
        sent = [("sent", "{} · sent #{}".format(t, n))
                for n, t in enumerate(("first", "second", "third"), 1)]
        wait_for("the three rows sent in order", lambda s: rows(s) == sent)
        if received() != ["first", "second", "third"]:
            raise CheckFailed("the server received {}".format(received()))
        show(3, "sent-online")

        send("a poison pill")
        wait_for("the poisoned message rolled back",
                 lambda s: rows(s) == sent and [d["cls"] for d in s.get("dead", [])] == ["rolled-back"])
        if received().count("a poison pill") != 3:
            raise CheckFailed("the poison pill was tried {} times, not 3".format(
                received().count("a poison pill")))
        show(4, "poison-rolled-back")
    except (CheckFailed, web_example.WebDriverError, OSError) as error:
        print("offline example check FAILED: {}".format(error), file=sys.stderr)
        print("the page showed: {}".format(json.dumps(last, indent=2)), file=sys.stderr)
        return 1
    finally:
        driver.quit()
    print("offline example: queued offline, kept across a reload, sent in order, poison rolled back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
