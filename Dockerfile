# The production server in a container: docker build -t sms-responder . && docker run --env-file .env -p 8000:8000 sms-responder
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --system --uid 10001 --no-create-home --home-dir /app responder
COPY config.py conversation.py callers.py inbound.py session_cookie.py signatures.py twiml.py logs.py metrics.py responder.py serve.py ./
USER responder

ENV RESPONDER_ENV=production HOST=0.0.0.0 PORT=8000 WEB_CONCURRENCY=2 PROMETHEUS_MULTIPROC_DIR=/tmp/sms-responder-metrics
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
CMD ["python", "serve.py", "serve"]
