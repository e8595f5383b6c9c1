# qbot: `qbot serve`, the bot, configured from QBOT_* environment variables (README: For administrators).
# Build: docker build -t qbot .        Run with Redis: docker compose up -d (compose.yaml)

# Python 3.13: on 3.11, asyncio.wait_for (which redis-py wraps around every socket write) can swallow a task's
# cancel that lands as the write completes; stopping work then waits longer than it should (fixed in 3.12).
FROM python:3.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY qbot ./qbot
COPY sandbox ./sandbox
RUN python -m venv /opt/qbot && /opt/qbot/bin/pip install --no-cache-dir .

FROM python:3.13-slim-bookworm
ENV PATH=/opt/qbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QBOT_HOST=0.0.0.0 \
    QBOT_PORT=3978
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin qbot
COPY --from=build /opt/qbot /opt/qbot
# The app manifests `qbot slack manifest` and `qbot teams package` fill in, where the installed code looks for them.
COPY manifests/slack /opt/qbot/lib/python3.13/site-packages/manifests/slack
COPY manifests/teams /opt/qbot/lib/python3.13/site-packages/manifests/teams
USER 10001:10001
WORKDIR /tmp
EXPOSE 3978
# /healthz answers while the process is alive (/readyz also needs Redis: use it for load-balancer readiness).
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('QBOT_PORT', '3978') + '/healthz', timeout=2)"]
ENTRYPOINT ["qbot"]
CMD ["serve"]
