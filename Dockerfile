# The production server in a container. Build and run (docker or podman):
#   docker build -t sms-responder . && docker run --env-file .env -p 8000:8000 --read-only --tmpfs /tmp sms-responder
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt && pip check

RUN groupadd --system --gid 10001 responder && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app responder
# .dockerignore lets in only the service's top-level modules: a new module ships, tests and tools do not.
COPY . .
USER 10001

# worker_connections follow the container's memory limit (`--memory 256m`: 1,228 per worker with these 2
# workers; no limit: 10,000 each), see docs/deploy.md, "Memory".
ENV RESPONDER_ENV=production HOST=0.0.0.0 PORT=8000 WEB_CONCURRENCY=2 PROMETHEUS_MULTIPROC_DIR=/tmp/sms-responder-metrics
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
