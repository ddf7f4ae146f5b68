"""The service's own work per webhook, stage by stage, in-process: where a webhook's microseconds go.

    .venv/bin/python -m bench.stages [--rounds 5] [--webhooks 2000] [--json]

The same signed webhooks (each the second message of its pair, so it carries a cookie to verify) go
through the stages of the request path one by one, each timed on its own with what the earlier ones
produced, as the view runs them; then the same webhooks through the whole app, and through the Flask
floor (bench/floor_app.py). Flask's own share is the whole request minus the stages. Medians of rounds.
Run in a process of its own, with PROMETHEUS_MULTIPROC_DIR set as in production (metrics written to
files), so no other import has chosen prometheus_client's value class before.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = (
    "form read",
    "signature",
    "cookie open",
    "caller lookup",
    "turn (keywords, retries, state checks)",
    "conversation.step (the built-in)",
    "TwiML",
    "cookie write",
    "log line",
    "metrics",
)
SERVICE_NUMBER = "+15005559999"


def prepared_webhooks(app, token: str, count: int) -> list[tuple[dict, bytes, str]]:
    """Return (environ, body, sender) of each pair's second message, its first one answered already."""
    from werkzeug.test import EnvironBuilder

    from bench.variants import PUBLIC_URL, sender
    from devtools.simulator import FlaskTransport, Simulator

    phone = Simulator(FlaskTransport(app), f"{PUBLIC_URL}/sms", token=token)
    webhooks = []
    for i in range(count):
        phone.send("hello", sender(i), SERVICE_NUMBER)
        params = phone.params(f"message {i}", sender(i), SERVICE_NUMBER)
        _, headers, body = phone.prepare(params, phone.cookie_header(sender(i), SERVICE_NUMBER))
        environ = EnvironBuilder(
            path="/sms", base_url=PUBLIC_URL, method="POST", headers=headers
        ).get_environ()
        environ["CONTENT_LENGTH"] = str(len(body))
        webhooks.append((environ, body, sender(i)))
    return webhooks


def fresh(environ: dict, body: bytes) -> dict:
    return {**environ, "wsgi.input": io.BytesIO(body)}


def whole_request(app, webhooks) -> float:
    """Return the CPU microseconds per webhook of the whole app (or the floor)."""

    def start_response(status, headers, exc_info=None):
        return None

    started = time.process_time()
    for environ, body, _ in webhooks:
        b"".join(app(fresh(environ, body), start_response))
    return (time.process_time() - started) / len(webhooks) * 1e6


def stage_by_stage(app, webhooks) -> dict[str, float]:
    """Return the CPU microseconds per webhook of each stage, timed on its own, in the view's order."""
    from flask import g, request
    from flask.ctx import RequestContext

    from conversation import DEFAULT_NAME
    from logs import log
    from responder import MAX_SID_CHARS, media_count
    from session_cookie import read_progress, write_progress
    from turn import Inbound, fingerprint, take_turn
    from twiml import twiml_response

    responder = app.extensions["responder"]
    interface = app.session_interface
    count_webhook = app.after_request_funcs[None]
    clock = time.process_time_ns
    spent = dict.fromkeys(STAGES, 0)
    for environ, body, sender in webhooks:
        context = RequestContext(app, fresh(environ, body), session=interface.session_class())  # opened below
        with context:
            g.started = time.perf_counter()
            req, started = request._get_current_object(), clock()
            fields = req.webhook_fields
            recipient = req.number_pair[1]
            t1 = clock()
            responder.guard.check(req)
            t2 = clock()
            context._session = saved = interface.open_session(app, req)
            t3 = clock()
            name = responder.directory.current().name_for(sender, DEFAULT_NAME)
            t4 = clock()
            sid = fields.first("MessageSid")[:MAX_SID_CHARS]
            inbound = Inbound(fields.first("Body"), fingerprint(sid), media_count(fields.first("NumMedia", "0")),
                              fields.first("OptOutType"), name, sender, recipient)  # fmt: skip
            progress = read_progress(saved)
            turn = take_turn(progress, inbound, time.time(), responder.conversation, app.config["HELP_TEXT"])
            write_progress(saved, turn.progress)
            t5 = clock()
            responder.conversation.step(dict(progress.state), turn.message)
            step_ns = clock() - t5
            t5 = clock()
            response = twiml_response(turn.reply)
            t6 = clock()
            interface.save_session(app, saved, response)
            t7 = clock()
            line = {"sid": sid, "pair": saved.pair[:12], "outcome": turn.outcome, "count": 2, "ms": 0.1}
            log.log(logging.INFO, "webhook", extra={"webhook": line})
            t8 = clock()
            g.outcome, g.fresh = turn.outcome, saved.fresh_reason
            for hook in count_webhook:
                hook(response)
            t9 = clock()
        assert turn.progress is not None and turn.count == 2, turn
        spans = [(started, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5 - step_ns), (0, step_ns), (t5, t6),
                 (t6, t7), (t7, t8), (t8, t9)]  # fmt: skip
        for stage, (a, b) in zip(STAGES, spans, strict=True):
            spent[stage] += b - a
    return {stage: ns / len(webhooks) / 1000 for stage, ns in spent.items()}


def measure(rounds: int, count: int) -> dict:
    """Build the service with production settings, then time stages, whole requests and the floor."""
    from bench import floor_app
    from bench.variants import BenchSettings
    from responder import create_app

    work = Path(tempfile.mkdtemp(prefix="sms-responder-stages-"))
    settings = BenchSettings.create(work, workers=1)
    app = create_app(settings.service_overrides(), instance_path=str(work / "instance"))
    # The log lines go to this process's stderr, a pipe bench/run.py reads, as in production.
    webhooks = prepared_webhooks(app, settings.auth_token, count)
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals, floors = [], []
    for _ in range(rounds):
        for stage, us in stage_by_stage(app, webhooks).items():
            stages[stage].append(us)
        totals.append(whole_request(app, webhooks))
        floors.append(whole_request(floor_app.app, webhooks))
    median = {stage: statistics.median(values) for stage, values in stages.items()}
    total = statistics.median(totals)
    return {
        "stages": median,
        "flask": total - sum(median.values()),
        "total": total,
        "floor": statistics.median(floors),
        "rounds": rounds,
        "webhooks": count,
    }


def render(result: dict) -> list[str]:
    """Return the per-stage table as Markdown lines."""
    lines = ["| stage | us per webhook | share |", "| --- | ---: | ---: |"]
    total = result["total"]
    for stage, us in [
        *result["stages"].items(),
        ("Flask's own share (whole request minus the stages)", result["flask"]),
    ]:
        lines.append(f"| {stage} | {us:.1f} | {us / total:.0%} |")
    lines.append(f"| **whole request** | **{total:.1f}** | 100% |")
    lines.append(f"| Flask floor, whole request | {result['floor']:.1f} | |")
    own = total - result["floor"]
    lines.append(f"| the service's own work (whole request minus the floor) | {own:.1f} | |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (for bench/run.py)")
    args = parser.parse_args(argv)
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sms-responder-stages-metrics-")
    )
    result = measure(args.rounds, args.webhooks)
    print(json.dumps(result) if args.json else "\n".join(render(result)))


if __name__ == "__main__":
    main()
