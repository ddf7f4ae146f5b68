"""Serve any WSGI app with the shipped production server: serve.py's PRODUCTION_SERVER, the same workers.

    python -m bench.serve_with bench.floor_app:app HOST PORT   (workers from WEB_CONCURRENCY)

serve.py imports the service's modules only inside its functions, so the served app pays for none of them.
"""

import sys

from serve import serve_production


def main() -> None:
    """Serve the target on HOST:PORT with WEB_CONCURRENCY workers."""
    target, host, port = sys.argv[1:4]
    serve_production(target, host, int(port))


if __name__ == "__main__":
    main()
