"""Serve any WSGI app with the shipped production server: granian with serve.py's PRODUCTION_SERVER.

    python -m bench.granian_serve bench.floor_app:app HOST PORT   (workers from WEB_CONCURRENCY)

The configuration is read from serve.py's source rather than imported, so the served app pays for
none of the service's imports.
"""

import ast
import os
import sys
from pathlib import Path

SERVE_PY = Path(__file__).resolve().parent.parent / "serve.py"


def production_server_config() -> dict:
    """Return the literal PRODUCTION_SERVER dict from serve.py."""
    for node in ast.parse(SERVE_PY.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PRODUCTION_SERVER" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{SERVE_PY}: no PRODUCTION_SERVER = {{...}} literal found")


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    target, host, port = sys.argv[1:4]
    options = dict(production_server_config(), interface=Interfaces.WSGI)
    workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    Granian(target, address=host, port=int(port), workers=workers, **options).serve()


if __name__ == "__main__":
    main()
