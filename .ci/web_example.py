#!/usr/bin/env python3
"""Clicks through the web example (examples/web) in headless Chromium and checks its texts.

It talks to a running chromedriver over the W3C WebDriver HTTP API with Python's standard
library only (urllib, json). The page must be served already (.ci/run serves it with
`python3 -m http.server`). Steps:

1. open the page and wait until the module says it is ready;
2. click "Start job", "Start failing job" and "Start long job"; once the long job (job 3) has
   reported progress, click "Cancel";
3. wait until the page shows a success with its value and 100 %, a failure after the retry,
   and a cancellation;
4. save a screenshot (PNG) and print a one-line summary.

Every wait polls the page's text until an overall deadline (--timeout, 60 s by default): this
is a check of what the page shows, not of how fast. On failure it prints what it waited for
and the page's text, and exits with status 1.

    python3 .ci/web_example.py --driver http://127.0.0.1:9515 \
        --page http://127.0.0.1:8000/index.html --screenshot target/artifacts/web-example.png
"""

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

# The W3C name of the key that holds an element reference.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"

# What the page must show once the three jobs have ended, by element id.
EXPECTED = {
    "job-1": ["job 1: succeeded: 42", "100 %"],
    "job-2": ["job 2: failed: job failed after 2 attempts: chunk 3 of 5 rejected by the server"],
    "job-3": ["job 3: cancelled"],
}
EXPECTED_SUMMARY = "3 jobs: 1 succeeded, 1 failed, 1 cancelled, 0 running"

# Reads everything the checks look at in one round trip.
SNAPSHOT_SCRIPT = """
const text = (id) => { const e = document.getElementById(id); return e ? e.innerText : null; };
const jobs = {};
for (const li of document.querySelectorAll("#jobs li")) {
  jobs[li.id] = li.innerText;
}
return {
  status: text("status"), summary: text("summary"), jobs: jobs, body: document.body.innerText,
};
"""


class CheckFailed(Exception):
    """A check of the page failed; the message says which."""


class WebDriverError(Exception):
    """chromedriver answered with an error."""


class Driver:
    """A minimal W3C WebDriver client: one session, JSON over HTTP."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.session = None

    def call(self, method, path, body=None, timeout=30):
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                value = json.loads(text).get("value", {})
                text = "{}: {}".format(value.get("error"), value.get("message"))
            except (ValueError, AttributeError):
                pass
            message = "{} {}: HTTP {}: {}".format(method, path, error.code, text)
            raise WebDriverError(message) from None
        return payload.get("value")

    def session_call(self, method, path, body=None):
        return self.call(method, "/session/{}{}".format(self.session, path), body)

    def start(self, chrome_args):
        capabilities = {"alwaysMatch": {"goog:chromeOptions": {"args": chrome_args}}}
        value = self.call("POST", "/session", {"capabilities": capabilities}, timeout=90)
        self.session = value["sessionId"]

    def quit(self):
        if self.session is not None:
            try:
                self.call("DELETE", "/session/{}".format(self.session))
            finally:
                self.session = None

    def open(self, url):
        self.session_call("POST", "/url", {"url": url})

    def click(self, css):
        found = self.session_call("POST", "/element", {"using": "css selector", "value": css})
        self.session_call("POST", "/element/{}/click".format(found[ELEMENT_KEY]), {})

    def script(self, source):
        return self.session_call("POST", "/execute/sync", {"script": source, "args": []})

    def screenshot(self):
        return base64.b64decode(self.session_call("GET", "/screenshot"))


def wait_until_up(url, deadline, what):
    """Waits until `url` answers an HTTP GET (chromedriver's /status, the page server)."""
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
                return
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(0.2)
    raise CheckFailed("{} did not answer at {}: {}".format(what, url, last))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--driver", required=True, help="chromedriver's URL")
    parser.add_argument("--page", required=True, help="the served index.html's URL")
    parser.add_argument("--screenshot", required=True, help="where to write the PNG")
    parser.add_argument(
        "--chrome-options",
        default="crates/orchestrator-wasm/webdriver.json",
        help="a JSON file with goog:chromeOptions.args (the browser tests' flags)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="overall deadline, seconds")
    args = parser.parse_args()

    with open(args.chrome_options) as f:
        chrome_args = json.load(f)["goog:chromeOptions"]["args"]
    chrome_args = chrome_args + ["--window-size=900,720"]

    deadline = time.monotonic() + args.timeout
    driver = Driver(args.driver)
    last = {}

    def snapshot():
        nonlocal last
        last = driver.script(SNAPSHOT_SCRIPT) or {}
        return last

    def wait_for(what, predicate):
        while True:
            if predicate(snapshot()):
                return
            if time.monotonic() >= deadline:
                raise CheckFailed(
                    "timed out after {:.0f} s waiting for {}".format(args.timeout, what)
                )
            time.sleep(0.1)

    try:
        wait_until_up(args.driver + "/status", deadline, "chromedriver")
        wait_until_up(args.page, deadline, "the page server")
        driver.start(chrome_args)
        driver.open(args.page)
        wait_for("the page to be ready", lambda s: (s.get("status") or "").startswith("ready"))

        driver.click("#start-job")
        driver.click("#start-failing-job")
        driver.click("#start-long-job")
        # The long job (job 3) has started once it has reported progress; then cancel it.
        wait_for(
            "job 3 to report progress",
            lambda s: "job 3: running" in s.get("jobs", {}).get("job-3", "")
            and "0 % · waiting" not in s.get("jobs", {}).get("job-3", ""),
        )
        driver.click("#cancel")

        def all_expected(s):
            jobs = s.get("jobs", {})
            return s.get("summary") == EXPECTED_SUMMARY and all(
                text in jobs.get(job, "") for job, texts in EXPECTED.items() for text in texts
            )

        wait_for("the three outcomes: " + EXPECTED_SUMMARY, all_expected)

        png = driver.screenshot()
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise CheckFailed("the screenshot is not a PNG")
        os.makedirs(os.path.dirname(args.screenshot) or ".", exist_ok=True)
        with open(args.screenshot, "wb") as f:
            f.write(png)
    except (CheckFailed, WebDriverError) as error:
        print("web example: FAILED: {}".format(error), file=sys.stderr)
        if last:
            print("--- the page's text ---", file=sys.stderr)
            print(last.get("body", ""), file=sys.stderr)
            print("--- end of the page's text ---", file=sys.stderr)
        return 1
    finally:
        try:
            driver.quit()
        except (WebDriverError, urllib.error.URLError, OSError):
            pass

    # The outcome line of each job, for the log.
    for job, text in sorted(last["jobs"].items()):
        prefix = job.replace("-", " ") + ":"
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        print("  " + (lines[0] if lines else text))
    print(
        "web example: {} jobs, texts checked, screenshot {} ({} bytes)".format(
            len(last["jobs"]), args.screenshot, len(png)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
