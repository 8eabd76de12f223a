#!/usr/bin/env python3
"""Kills the durable-service example (examples/durable_service.rs) with SIGKILL while a job it
accepted is running, starts it again on the same directory, and checks that the job finishes.

1. Start the service on a fresh data directory; POST /jobs?frames=60 (about 2.4 s of work),
   POST three quick jobs (one with a JSON body), and check the bad requests (400 with a JSON
   message, an unknown id is a 404 with a JSON message).
2. Wait until the long job reports progress, then SIGKILL the process.
3. Start it again: it says it recovered the job; GET /jobs/<id> shows it running again
   ("recovered": true), then "succeeded" with the output; the quick jobs' outcomes are read
   back from the store. The log shows two runs of the long job under the same id.

Every wait has an overall deadline (--timeout): a check of what happens, not of how fast.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class CheckFailed(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(method, url, body=None, content_type=None):
    """(status, parsed JSON body, content type) of a request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response), response.headers.get("content-type")
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), error.headers.get("content-type")


def start(binary, port, data, log):
    env = dict(os.environ, PORT=str(port), DATA_DIR=data)
    return subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_up(base, process, deadline):
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CheckFailed("the service exited with {}".format(process.returncode))
        try:
            call("GET", base + "/jobs/0")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise CheckFailed("the service did not answer at " + base)


def wait_state(base, job, want, deadline):
    last = None
    while time.monotonic() < deadline:
        status, body, _ = call("GET", "{}/jobs/{}".format(base, job))
        last = (status, body)
        if status == 200 and want(body):
            return body
        time.sleep(0.05)
    raise CheckFailed("job {} never reached the expected state; last answer {}".format(job, last))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/debug/examples/durable_service")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    data = tempfile.mkdtemp(prefix="durable-service-")
    port = free_port()
    base = "http://127.0.0.1:{}".format(port)
    log_path = os.path.join(data, "service.log")
    log = open(log_path, "w")
    process = start(args.binary, port, data, log)
    try:
        wait_up(base, process, deadline)
        status, body, ctype = call("POST", base + "/jobs?frames=60", b"")
        if status != 201 or "json" not in (ctype or ""):
            raise CheckFailed("POST /jobs answered {} {} {}".format(status, ctype, body))
        long_job = body["id"]
        quick = []
        for request in [("/jobs?frames=1", b"", None), ("/jobs", b'{"frames": 2}', "application/json"),
                        ("/jobs?frames=3", b"", None)]:
            status, body, _ = call("POST", base + request[0], request[1], request[2])
            if status != 201:
                raise CheckFailed("POST {} answered {} {}".format(request[0], status, body))
            quick.append(body["id"])
        for bad in ["/jobs?frames=lots", "/jobs?frames=0"]:
            status, body, _ = call("POST", base + bad, b"")
            if status != 400 or "error" not in body:
                raise CheckFailed("POST {} answered {} {}".format(bad, status, body))
        status, body, _ = call("POST", base + "/jobs", b'{"frame": 2}', "application/json")
        if status != 400 or "error" not in body:
            raise CheckFailed("a wrong JSON body answered {} {}".format(status, body))
        status, body, _ = call("GET", base + "/jobs/" + "0" * 48)
        if status != 404 or "no job" not in body.get("error", ""):
            raise CheckFailed("an unknown id answered {} {}".format(status, body))

        running = wait_state(base, long_job, lambda b: b["state"] == "running" and b["progress"] > 0,
                             deadline)
        killed_at = running["progress"]
        process.send_signal(signal.SIGKILL)
        process.wait()

        process = start(args.binary, port, data, log)
        wait_up(base, process, deadline)
        again = wait_state(base, long_job, lambda b: b["state"] != "running" or b["recovered"],
                           deadline)
        done = wait_state(base, long_job, lambda b: b["state"] != "running", deadline)
        if done != {"id": long_job, "state": "succeeded", "outcome": "rendered 60 frames"}:
            raise CheckFailed("the long job ended as {}".format(done))
        for job, frames in zip(quick, [1, 2, 3]):
            body = wait_state(base, job, lambda b: b["state"] != "running", deadline)
            if body["outcome"] != "rendered {} frames".format(frames):
                raise CheckFailed("quick job {} ended as {}".format(job, body))
        log.flush()
        with open(log_path) as f:
            lines = f.read().splitlines()
        runs = [line for line in lines if line.startswith("run of " + long_job)]
        recovered = [int(line.split()[1]) for line in lines if line.startswith("recovered ")]
        # The second start recovers the long job (and any quick one the kill caught running).
        if len(runs) != 2 or recovered[:1] != [0] or len(recovered) != 2 or recovered[1] < 1:
            raise CheckFailed("the log shows {} run(s) of the long job:\n{}".format(
                len(runs), "\n".join(lines)))
        print("durable service: job {}... accepted, SIGKILLed at {:.0f} %, restarted ({}), ran "
              "twice under one id, succeeded: {}; 3 quick jobs' outcomes read back after the "
              "restart ({} job(s) recovered)".format(long_job[:12], killed_at * 100,
                              "running again" if again["state"] == "running" else "already done",
                              done["outcome"], recovered[1]))
    except CheckFailed as failure:
        log.flush()
        with open(log_path) as f:
            sys.stderr.write(f.read())
        sys.stderr.write("durable service check failed: {}\n".format(failure))
        return 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
