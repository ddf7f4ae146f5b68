"""Start the responder: `run` (development server), `serve` (production server) or `check`, settings first."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def metrics_dir() -> str:
    """Return an empty folder for the workers' metrics files (PROMETHEUS_MULTIPROC_DIR, else a new one)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or tempfile.mkdtemp(
        prefix="sms-responder-metrics-"
    )
    os.makedirs(path, exist_ok=True)
    for stale in Path(path).glob("*.db"):  # a previous run's counts are not this run's
        stale.unlink()
    return path


def forget_worker_gauges(server, worker) -> None:
    """Drop an exited worker's gauges from /metrics; its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def yield_to_other_connections(worker, req, environ, resp) -> None:
    """Let the worker's other connections run before this one reads its next request."""
    # A gevent worker switches greenlets only when one would block; a keep-alive client that sends its
    # next request at once would otherwise keep the worker to itself (p99 of seconds at saturation).
    import gevent

    gevent.sleep(0)


# The production server's checked-in configuration (README, "Deploy" and "Security"): gunicorn with gevent
# workers, so a client that trickles its body or sits idle holds a greenlet and a socket, never a worker.
# granian (faster on this service) and gunicorn's sync and gthread workers were measured against it:
# one trickling body stalled a whole granian or sync worker (bench/RESULTS.md, README "Security").
PRODUCTION_SERVER = {
    "worker_class": "gevent",
    "worker_connections": 10_000,  # per worker: open connections, idle or slow ones included
    "backlog": 4096,  # the kernel's somaxconn caps it anyway
    "keepalive": 30,  # seconds an idle keep-alive connection stays open (nginx's upstream keepalive: 20 s)
    "graceful_timeout": 20,  # SIGTERM: in-flight requests get this long (Twilio waits 15 s)
    "timeout": 30,
    "accesslog": None,  # the app logs one JSON line per webhook instead
    "errorlog": "-",
    "loglevel": "warning",
    "proc_name": "sms-responder",
    "post_request": yield_to_other_connections,
    "child_exit": forget_worker_gauges,
}
SERVICE = "responder:create_app()"


def load_settings():
    """Validate the settings or exit with every problem, one per line."""
    from config import INSTANCE_PATH, ConfigError, load_settings, read_environment

    try:
        return load_settings(read_environment(), INSTANCE_PATH / "dev-secret-key")
    except ConfigError as exc:
        print("The responder cannot start; fix these settings (environment or .env):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def worker_count() -> int:
    """Return WEB_CONCURRENCY, else the number of cores."""
    from config import read_environment  # .env counts, as for every other setting

    raw = read_environment().get("WEB_CONCURRENCY", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            print(f"WEB_CONCURRENCY={raw!r} must be a whole number of workers >= 1", file=sys.stderr)
            raise SystemExit(2)
        return int(raw)
    return os.cpu_count() or 1


def serve_production(target: str, host: str, port: int, workers: int | None = None) -> None:
    """Serve the WSGI app `target` (module:app or module:factory()) with the production server."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir()  # before any worker imports prometheus_client

    class ProductionServer(BaseApplication):
        def load_config(self) -> None:
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address needs brackets
            for name, value in {
                **PRODUCTION_SERVER,
                "bind": bind,
                "workers": workers or worker_count(),
            }.items():
                self.cfg.set(name, value)

        def load(self):
            return import_app(target)  # in each worker, after gevent has patched it

    ProductionServer().run()


def webhook_url(settings) -> str:
    """Return the URL to give Twilio: PUBLIC_URL + /sms when set, else where this server listens."""
    return f"{settings.public_url or f'http://{settings.host}:{settings.port}'}/sms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["run", "serve", "check"], help="run: development; serve: production")
    mode = parser.parse_args(argv).mode
    if mode == "run":
        from config import read_environment

        if not read_environment().get("RESPONDER_ENV", "").strip():
            os.environ["RESPONDER_ENV"] = "development"  # make run needs no configuration at all
    settings = load_settings()
    if mode == "serve" and not settings.is_production:
        print(
            "make serve needs production settings: unset RESPONDER_ENV or set it to production",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if mode == "check":
        checked = "checked" if settings.checks_signatures else "NOT checked"
        print(
            f"settings OK ({settings.env}); signatures {checked}; serving on http://{settings.host}:{settings.port}"
        )
        print(
            f"Twilio Console > Phone Numbers > your number > Messaging > A message comes in: {webhook_url(settings)}"
        )
        return
    if settings.is_production:
        workers = worker_count()
        print(
            f"responder: production server on http://{settings.host}:{settings.port}, {workers} workers; "
            f"Twilio posts to {webhook_url(settings)}",
            file=sys.stderr,
        )
        serve_production(SERVICE, settings.host, settings.port, workers)
        return
    from responder import create_app

    print(f"responder (development): POST Twilio webhooks to {webhook_url(settings)}", file=sys.stderr)
    create_app().run(host=settings.host, port=settings.port, threaded=True, load_dotenv=False)


if __name__ == "__main__":
    main()
