"""Start the responder: `run` (development server), `serve` (the production server) or `check`, settings first."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from gunicorn import glogging

HERE = Path(__file__).resolve().parent
SERVICE = "responder:create_app()"


def load_settings():
    """Validate the settings or exit with every problem, one per line, and the environment judged."""
    from config import INSTANCE_PATH, ConfigError, load_settings, read_environment

    try:
        return load_settings(read_environment(), INSTANCE_PATH / "dev-secret-key")
    except ConfigError as exc:
        print(f"The responder cannot start ({environment_judged()}); fix these settings:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def check_the_conversation(settings, messages: int = 300) -> None:
    """Drive CONVERSATION through simulated messages; exit naming its first defect."""
    from contract import MARATHON, PHONES, check_conversation

    defect = check_conversation(settings, messages=messages)
    name = settings.conversation.name
    if defect:
        print(f"CONVERSATION={name}: {defect}", file=sys.stderr)
        raise SystemExit(2)
    print(
        f"conversation {name}: {messages} simulated messages from {len(PHONES)} phones and one conversation "
        f"of {MARATHON}: no defect found"
    )


def environment_judged() -> str:
    """Say which environment the settings are judged for, and which setting decided it."""
    from dotenv import dotenv_values

    for source, values in (("the environment", os.environ), (".env", dotenv_values(".env"))):
        chosen = (values.get("RESPONDER_ENV") or "").strip()
        if chosen:
            return f"{chosen.lower()}: RESPONDER_ENV={chosen} in {source}"
    return "production: RESPONDER_ENV is not set, and production is the default; set RESPONDER_ENV=development for development"


def server_setting(name: str) -> str:
    """Return a setting of the production server (HOST, PORT, WEB_CONCURRENCY) from the environment or .env."""
    from config import read_environment

    return read_environment().get(name, "").strip()


def bind_address() -> str:
    """Return HOST:PORT for gunicorn's bind (an IPv6 address in brackets)."""
    host, port = server_setting("HOST") or "127.0.0.1", server_setting("PORT") or "5000"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_count() -> int:
    """Return WEB_CONCURRENCY, else the number of cores."""
    raw = server_setting("WEB_CONCURRENCY")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            print(f"WEB_CONCURRENCY={raw!r} must be a whole number of workers >= 1", file=sys.stderr)
            raise SystemExit(2)
        return int(raw)
    return os.cpu_count() or 1


# Memory sizes measured by tests/hostile/test_memory.py against `make serve` (figures: docs/deploy.md).
CONNECTION_KIB = 20  # an idle keep-alive connection: 14 to 16 KiB of RSS, 16 to 18 charged with its socket
PROCESS_MIB = 48  # the master or a worker: 32 to 40 MiB at start, plus a few requests in flight
MOST_CONNECTIONS = 10_000  # per worker, when no memory limit applies
FEWEST_CONNECTIONS = 100


def memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Return the memory limit of this process's cgroup (v2 or v1) and its parents in bytes, or None."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:  # not Linux: no cgroups
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "-", "")
        if controllers == "":  # cgroup v2
            folder, name = cgroup_root / path.lstrip("/"), "memory.max"
        elif "memory" in controllers.split(","):
            folder, name = cgroup_root / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
        else:
            continue
        for level in (folder, *folder.parents):
            if level == cgroup_root.parent:
                break
            with contextlib.suppress(OSError, ValueError):
                limits.append(int((level / name).read_text()))  # v2's "max" is no limit
    limits = [limit for limit in limits if limit < 2**60]  # v1 writes no limit as about 2**63
    return min(limits, default=None)


def connections_per_worker(limit: int | None, workers: int) -> int:
    """Return gunicorn's worker_connections: idle connections that fit 3/4 of the memory limit."""
    if limit is None:
        return MOST_CONNECTIONS
    # The last quarter is headroom: bodies being read, the heap's growth, the memory-backed /tmp.
    spare_kib = (limit * 3 // 4) // 1024 - (workers + 1) * PROCESS_MIB * 1024
    return max(FEWEST_CONNECTIONS, min(MOST_CONNECTIONS, spare_kib // workers // CONNECTION_KIB))


def metrics_dir() -> str:
    """Return the workers' metrics folder (PROMETHEUS_MULTIPROC_DIR, else a new one), this instance's alone."""
    import metrics_folder

    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    return metrics_folder.prepare(chosen, tempfile.gettempdir())


def check_before_binding(server) -> None:
    """gunicorn's on_starting: refuse to start without production settings; prepare the metrics folder."""
    if server.app.app_uri == SERVICE:  # the bench serves other apps with the same server
        settings = load_settings()
        if not settings.is_production:
            print(
                "make serve needs production settings: unset RESPONDER_ENV or set it to production",
                file=sys.stderr,
            )
            raise SystemExit(2)
        print(
            f"responder: production server on http://{bind_address()}, {server.cfg.workers} workers of "
            f"{server.cfg.worker_connections:,} connections; "
            f"Twilio posts to {webhook_url(settings)}",
            file=sys.stderr,
        )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir()  # before any worker imports prometheus_client
    from logs import STDERR

    STDERR.on_drop = count_dropped_log_lines_of_the_master


def retire_worker_metrics(server, worker) -> None:
    """gunicorn's child_exit: drop an exited worker's gauges, fold its counters into the archive files."""
    from prometheus_client import multiprocess

    import metrics_folder

    multiprocess.mark_process_dead(worker.pid)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    problem = metrics_folder.retire(folder, worker.pid) if folder else ""
    if problem:
        server.log.warning("%s", problem)  # the error log never blocks the master (logs.py)


def start_boot_clock(server, worker) -> None:
    """gunicorn's pre_fork: date the new worker's heartbeat now, so that a worker that hangs at boot times out."""
    # gunicorn 27.0.1 dates heartbeats by time.monotonic() but leaves a new worker's heartbeat file dated by
    # the wall clock (mkstemp), decades ahead of the monotonic clock: until its first heartbeat, a worker
    # (one blocked at boot in a read, say) was never timed out.
    worker.tmp.notify()


def yield_to_other_connections(worker, req, environ, resp) -> None:
    """gunicorn's post_request: let the worker's other connections run before this one's next request."""
    # A gevent worker switches greenlets only when one would block; a keep-alive client that sends its
    # next request at once would otherwise keep the worker to itself (p99 of seconds at saturation).
    import gevent

    gevent.sleep(0)


class JsonErrorLog(glogging.Logger):
    """gunicorn's logger, its error log written as the service's JSON lines (gunicorn's logger_class)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from logs import JsonFormatter, StderrHandler

        for handler in list(self.error_log.handlers):
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__):
                # errorlog "-": a blocked stderr must not stop the master or a worker (logs.py)
                self.error_log.removeHandler(handler)
                handler = StderrHandler()
                handler._gunicorn = True  # the handler gunicorn replaces when it sets up again (SIGHUP)
                self.error_log.addHandler(handler)
            handler.setFormatter(JsonFormatter())


def count_dropped_log_lines_of_the_master(lines: int) -> None:
    """Count log lines the master dropped, in its own metrics file (made at its first drop)."""
    global master_dropped_lines
    if master_dropped_lines is None:
        import metrics_folder

        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if not folder or metrics_folder.reserve(folder, os.getpid()):
            master_dropped_lines = lambda lines: None  # noqa: E731 - no folder to count in: not counted
        else:
            from metrics import dropped_log_lines_counter

            master_dropped_lines = dropped_log_lines_counter(None).inc
    master_dropped_lines(lines)


master_dropped_lines = None


def webhook_url(settings) -> str:
    """Return the URL to give Twilio: PUBLIC_URL + /sms when set, else where this server listens."""
    return f"{settings.public_url or f'http://{settings.host}:{settings.port}'}/sms"


def exec_production_server() -> None:
    """Become `gunicorn -c gunicorn.conf.py`, once WEB_CONCURRENCY is known to be a number."""
    worker_count()  # gunicorn itself reads it too, and fails on a bad one with a traceback
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(HERE / "gunicorn.conf.py")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["run", "serve", "check"], help="run: development; serve: production")
    mode = parser.parse_args(argv).mode
    if mode == "serve":
        exec_production_server()
    if mode == "run":
        from config import read_environment

        if not read_environment().get("RESPONDER_ENV", "").strip():
            os.environ["RESPONDER_ENV"] = "development"  # make run needs no configuration at all
    settings = load_settings()
    if mode == "check":
        checked = "checked" if settings.checks_signatures else "NOT checked"
        print(f"environment {environment_judged()}")
        for warning in settings.all_warnings:
            print(f"warning: {warning}")
        check_the_conversation(settings)
        print(
            f"settings OK ({settings.env}); signatures {checked}; serving on http://{settings.host}:{settings.port}"
        )
        print(
            f"Twilio Console > Phone Numbers > your number > Messaging > A message comes in: {webhook_url(settings)}"
        )
        return
    if settings.is_production:
        exec_production_server()
    from responder import create_app

    print(f"responder (development): POST Twilio webhooks to {webhook_url(settings)}", file=sys.stderr)
    create_app().run(host=settings.host, port=settings.port, threaded=True, load_dotenv=False)


if __name__ == "__main__":
    main()
