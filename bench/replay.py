"""The second load shape: many connections on one wrk thread, each webhook carrying its recorded cookie.

With many connections on one thread, wrk's script cannot tell which answer belongs to which request, so
it cannot keep Twilio's cookie jar per pair. Instead every signed webhook of the data set is sent with the
cookie it would carry: recorded here, once per app, by playing the whole data set in send order through
the app in-process (Flask's test client, the server's own keys, one jar per pair). Played by wrk, each
reply still states its count, so the harness checks that the recorded cookies were accepted.

Runs as a child process (`python -m bench.replay`, a JSON spec on stdin) so the app's log lines and
metrics stay out of the harness.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from itertools import zip_longest
from pathlib import Path

from bench.load import Dataset
from bench.procs import HarnessError
from bench.variants import BIN, ROOT, BenchSettings

APPS = ("service", "baseline")  # the Flask floor reads no cookie: it replays the service's


def build_app(app: str, overrides: dict, secret_key: str):
    """Build the app whose cookies are recorded, with the settings its servers run with."""
    if app == "service":
        from responder import create_app

        return create_app(overrides)
    os.environ["SECRET_KEY"] = secret_key  # read when the tutorial app is imported
    from bench.baseline_app import app as baseline

    return baseline


def send_order(dataset: Dataset):
    """Yield the data set's lines as one thread sends them: the per-thread files taken in turn."""
    files = [open(f"{dataset.prefix}-{t}.tsv", encoding="utf-8") for t in range(dataset.threads)]  # noqa: SIM115
    try:
        for lines in zip_longest(*files):
            yield from (line.rstrip("\n") for line in lines if line is not None)
    finally:
        for file in files:
            file.close()


def record(app, dataset: Dataset, out: Dataset) -> None:
    """Play the data set through `app`; write each line with the cookie its pair held before it."""
    client = app.test_client(use_cookies=False)
    jars: dict[str, str] = {}
    with open(f"{out.prefix}-0.tsv", "w", encoding="utf-8") as written:
        for line in send_order(dataset):
            pair, signature, body = line.split("\t")
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
            cookie = jars.get(pair, "")
            if cookie:
                headers["Cookie"] = cookie
            answer = client.post("/sms", data=body, headers=headers, base_url="http://127.0.0.1")
            if answer.status_code != 200:
                raise SystemExit(f"recording: {answer.status_code} {answer.get_data()[:200]!r}")
            for set_cookie in answer.headers.getlist("Set-Cookie"):
                pair_cookie = set_cookie.split(";", 1)[0].strip()
                if pair_cookie.endswith("="):
                    jars.pop(pair, None)
                else:
                    jars[pair] = pair_cookie
            written.write(f"{line}\t{cookie}\n")


def replay_dataset(settings: BenchSettings, dataset: Dataset, app: str) -> Dataset:
    """Record `app`'s cookies for `dataset` in a child process; return the one-thread data set."""
    out = Dataset(dataset.prefix.with_name(f"replay-{app}"), 1, dataset.pairs, dataset.messages)
    spec = {
        "app": app,
        "overrides": settings.service_overrides(),
        "secret_key": settings.secret_key,
        "dataset": [str(dataset.prefix), dataset.threads, dataset.pairs, dataset.messages],
        "out": str(out.prefix),
    }
    child = subprocess.run(
        [str(BIN / "python"), "-m", "bench.replay"],
        input=json.dumps(spec).encode(), capture_output=True, cwd=ROOT, check=False, timeout=900,
    )  # fmt: skip
    if child.returncode != 0:
        raise HarnessError(
            f"recording {app} cookies failed:\n{child.stderr.decode(errors='replace')[-2000:]}"
        )
    return out


def main() -> None:
    spec = json.load(sys.stdin)
    app = build_app(spec["app"], spec["overrides"], spec["secret_key"])
    logging.getLogger("responder").disabled = True  # its JSON lines would fill the pipe; nothing reads them
    prefix, threads, pairs, messages = spec["dataset"]
    record(
        app, Dataset(Path(prefix), threads, pairs, messages), Dataset(Path(spec["out"]), 1, pairs, messages)
    )


if __name__ == "__main__":
    main()
