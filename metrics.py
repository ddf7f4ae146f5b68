"""Prometheus metrics at /metrics: per app in one process, summed over every worker in production.

Production sets PROMETHEUS_MULTIPROC_DIR (serve.py) before the workers import this module, so every
worker writes its samples to files there and a scrape of any worker reads them all, those of workers
that have exited included. A worker that cannot reserve its files there (metrics_folder.py) counts
nothing and answers /metrics with a 503 saying why: metrics are not worth a single webhook. No label
ever holds a phone number, a body or a name.
"""

from __future__ import annotations

import fcntl
import os
import time

from flask import Flask, Response, g
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

import metrics_folder
from logs import STDERR, log

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REFUSALS = {
    400: "bad_request",
    403: "signature",
    405: "method",
    411: "no_length",
    413: "too_large",
    415: "media_type",
}


def outcome_label(outcome: str) -> str:
    """Turn a log line's outcome ('keyword:stop', 'refused:413') into a label ('keyword_stop', 'refused_too_large')."""
    kind, _, detail = outcome.partition(":")
    if kind == "refused" and detail.isdigit():
        return f"refused_{REFUSALS.get(int(detail), detail)}"
    if kind == "error":
        return "error"
    return outcome.replace(":", "_")


def dropped_log_lines_counter(registry: CollectorRegistry | None) -> Counter:
    """Return the counter of log lines dropped while stderr was blocked (logs.py), on `registry`."""
    return Counter(
        "responder_log_lines_dropped",
        "Log lines dropped because stderr was blocked (nobody read it).",
        registry=registry,
    )


class Metrics:
    """The responder's metrics, registered on a registry of their own (or written to the multiprocess files)."""

    def __init__(self) -> None:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        self.is_multiprocess = bool(folder)
        self.off = ""  # why this process counts nothing, when it does not
        self.by_outcome: dict = {}  # outcome -> its labelled counter, looked up once
        self.by_fresh_reason: dict = {}
        if self.is_multiprocess:
            problem = metrics_folder.reserve(folder, os.getpid())
            if problem:
                self.off = (
                    f"metrics are off in this worker: PROMETHEUS_MULTIPROC_DIR={folder} cannot be written "
                    f"({problem}); webhooks are answered but not counted. Free space there or fix it, "
                    "then reload the server (SIGHUP)"
                )
                log.warning("%s", self.off)
                return
        registry = None if self.is_multiprocess else CollectorRegistry()
        self.registry = registry
        self.webhooks = Counter(
            "responder_webhooks_total", "Webhooks answered, by outcome.", ["outcome"], registry=registry
        )
        self.fresh = Counter(
            "responder_conversations_fresh_total",
            "Conversations that started fresh, by why (new: no cookie yet).",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "responder_webhook_duration_seconds",
            "Time spent answering a webhook.",
            buckets=BUCKETS,
            registry=registry,
        )
        self.directory_entries = Gauge(
            "responder_caller_directory_entries",
            "Numbers in the caller directory.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.reload_failures = Counter(
            "responder_caller_directory_reload_failures_total",
            "Caller directory reloads that failed (the previous directory was kept).",
            registry=registry,
        )
        self.log_lines_dropped = dropped_log_lines_counter(registry)
        STDERR.on_drop = self.log_lines_dropped.inc
        if registry is not None:
            ProcessCollector(registry=registry)

    def directory_loaded(self, entries: int, failed: bool) -> None:
        """Record a caller directory (re)load."""
        if self.off:
            return
        self.directory_entries.set(entries)
        if failed:
            self.reload_failures.inc()

    def exposition(self) -> Response:
        """Render every worker's samples in Prometheus' text format (a 503 saying why when metrics are off)."""
        if self.off:
            return Response(
                f"503 Service Unavailable: {self.off}\n", 503, content_type="text/plain; charset=utf-8"
            )
        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            ProcessCollector(registry=registry)  # the worker that answers this scrape
            folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
            with metrics_folder.scrape_lock(folder, fcntl.LOCK_SH):  # no exited worker folded meanwhile
                return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    def init_app(self, app: Flask) -> None:
        """Count and time every webhook call (the ones whose outcome the app set) through the request hooks."""

        @app.before_request
        def start_clock() -> None:
            g.started = time.perf_counter()

        @app.after_request
        def count_webhook(response: Response) -> Response:
            context = g._get_current_object()  # one proxy lookup, not four
            outcome = context.get("outcome")
            if outcome and not self.off:
                if outcome not in self.by_outcome:
                    self.by_outcome[outcome] = self.webhooks.labels(outcome_label(outcome))
                self.by_outcome[outcome].inc()
                self.duration.observe(time.perf_counter() - context.started)
                reason = context.get("fresh")
                if reason:
                    if reason not in self.by_fresh_reason:
                        self.by_fresh_reason[reason] = self.fresh.labels(reason)
                    self.by_fresh_reason[reason].inc()
            return response

        app.add_url_rule("/metrics", "metrics", self.exposition, methods=["GET"])
