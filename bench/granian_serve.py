"""Serve any WSGI app with the shipped production server: granian with serve.py's PRODUCTION_SERVER.

    python -m bench.granian_serve bench.floor_app:app HOST PORT   (workers from WEB_CONCURRENCY)

serve.py imports config (and with it the service's modules) only inside its functions, so importing
PRODUCTION_SERVER and worker_count() loads none of them: granian forks its workers from this master,
and they hold granian, Flask and the target app only.
"""

import sys

from granian import Granian
from granian.constants import Interfaces

from serve import PRODUCTION_SERVER, worker_count


def main() -> None:
    """Serve the target on HOST:PORT with WEB_CONCURRENCY workers."""
    target, host, port = sys.argv[1:4]
    options = dict(PRODUCTION_SERVER, interface=Interfaces.WSGI)
    Granian(target, address=host, port=int(port), workers=worker_count(), **options).serve()


if __name__ == "__main__":
    main()
