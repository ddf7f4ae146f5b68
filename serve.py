"""Start the responder: `run` (development server) or `serve` (production server), settings checked first."""

from __future__ import annotations

import argparse
import os
import sys

# The production server's checked-in configuration (see README, "Deploy"). granian won the measurement
# against gunicorn on this service (bench/RESULTS.md).
PRODUCTION_SERVER = {
    "interface": "wsgi",
    "log_access": False,  # the app logs one JSON line per webhook instead
    "workers_kill_timeout": 20,  # graceful shutdown: in-flight requests get this long (Twilio waits 15 s)
    "respawn_failed_workers": True,
    "backlog": 2048,
    "blocking_threads": 1,  # one request at a time per worker: the app is CPU-bound
}


def build_app():
    """Build the app or exit with the configuration problems, one per line."""
    from config import ConfigError
    from responder import create_app

    try:
        return create_app()
    except ConfigError as exc:
        print("The responder cannot start; fix these settings (environment or .env):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def worker_count() -> int:
    """Return WEB_CONCURRENCY, else the number of cores."""
    raw = os.environ.get("WEB_CONCURRENCY", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            print(f"WEB_CONCURRENCY={raw!r} must be a whole number of workers >= 1", file=sys.stderr)
            raise SystemExit(2)
        return int(raw)
    return os.cpu_count() or 1


def serve_production(host: str, port: int, url: str) -> None:
    """Serve with the production server; every worker builds its own app with create_app()."""
    from granian import Granian
    from granian.constants import Interfaces

    options = dict(PRODUCTION_SERVER, interface=Interfaces.WSGI)
    workers = worker_count()
    print(
        f"responder: production server on http://{host}:{port}, {workers} workers; Twilio posts to {url}",
        file=sys.stderr,
    )
    Granian("responder:create_app", factory=True, address=host, port=port, workers=workers, **options).serve()


def webhook_url(settings) -> str:
    """Return the URL to give Twilio: PUBLIC_URL + /sms when set, else where this server listens."""
    return f"{settings.public_url or f'http://{settings.host}:{settings.port}'}/sms"


def main(argv: list[str] | None = None) -> None:
    from config import read_environment  # here, so `from serve import PRODUCTION_SERVER` stays light

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["run", "serve", "check"], help="run: development; serve: production")
    mode = parser.parse_args(argv).mode
    if mode == "run" and not read_environment().get("RESPONDER_ENV", "").strip():
        os.environ["RESPONDER_ENV"] = "development"  # make run needs no configuration at all
    app = build_app()
    settings = app.extensions["responder"].settings
    if mode == "serve" and not settings.is_production:
        print(
            "make serve needs production settings: unset RESPONDER_ENV or set it to production",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if mode == "check":
        print(
            f"settings OK ({settings.env}); signatures {'checked' if settings.checks_signatures else 'NOT checked'}"
        )
        print(
            f"Twilio Console > Phone Numbers > your number > Messaging > A message comes in: {webhook_url(settings)}"
        )
        return
    if settings.is_production:
        serve_production(settings.host, settings.port, webhook_url(settings))
        return
    print(
        f"responder (development): POST Twilio webhooks to {webhook_url(settings)}",
        file=sys.stderr,
    )
    app.run(host=settings.host, port=settings.port, threaded=True, load_dotenv=False)


if __name__ == "__main__":
    main()
