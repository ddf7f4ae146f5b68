"""The production server: gunicorn with gevent workers. `make serve` runs `gunicorn -c gunicorn.conf.py`.

A client that trickles its body or sits idle holds a greenlet and a socket, never a worker. HOST, PORT and
WEB_CONCURRENCY come from the environment or `.env`, like every setting of the service; the master
checks the service's settings before it binds, and exits naming each problem.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the service's modules, whatever the cwd

import metrics_folder
import serve

wsgi_app = serve.SERVICE
bind = [serve.bind_address()]
workers = serve.worker_count()
worker_class = "gevent_worker.Worker"  # gevent's, minus the wait for idle keep-alive connections at stop
# Per worker: open connections, idle or slow ones included, as many as fit the container's memory limit
# (1,228 in 256 MiB with 2 workers; 10,000 without a limit). See docs/deploy.md, "Memory".
worker_connections = serve.connections_per_worker(serve.memory_limit(), workers)
backlog = 4096  # the kernel's somaxconn caps it anyway
keepalive = 30  # seconds an idle keep-alive connection stays open (nginx's upstream keepalive: 20 s)
graceful_timeout = (
    5  # SIGTERM: requests in flight get this long; the whole stop stays within Cloud Run's 10 s
)
timeout = 30
limit_request_line = (
    8190  # gunicorn's maximum: the longest GET webhook (the README says how long a body fits)
)
forwarded_allow_ips = ""  # trust no forwarded header of gunicorn's own: TRUSTED_PROXIES is the one switch
forwarder_headers = ""
accesslog = None  # the app logs one JSON line per webhook instead
errorlog = "-"
loglevel = "warning"
logger_class = "serve.JsonErrorLog"  # gunicorn's own messages as the service's JSON lines, one each
proc_name = "sms-responder"
control_socket_disable = True  # no gunicornc control socket: nothing uses it; the root is read-only
on_starting = serve.check_before_binding
pre_fork = serve.start_boot_clock
post_request = serve.yield_to_other_connections
child_exit = serve.retire_worker_metrics  # a dead worker's files: folded, never piled up
on_exit = metrics_folder.remove_if_ours  # the metrics folder made when none was set
