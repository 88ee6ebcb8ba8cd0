# syntax=docker/dockerfile:1
# One image for every role; the command picks it: api | worker | scheduler | migrate | ...

# The Python base image: Docker users keep the default; `make compose-check` builds a stand-in from
# Debian's packages on machines with no registry (deploy/compose-check/images.sh).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv
WORKDIR /app
# Dependencies first, so source edits don't re-download them.
COPY pyproject.toml uv.lock ./
COPY device/pyproject.toml device/README.md device/
RUN uv sync --frozen --no-dev --no-install-project --no-install-workspace
COPY alembic.ini README.md ./
COPY migrations migrations
COPY workers workers
COPY app app
RUN uv sync --frozen --no-dev

FROM ${PYTHON_IMAGE}
# pg_dump/pg_restore for `smokehouse backup`/`restore` (the client must be at least the server's
# major version: the official image's Debian ships 17, which reads PostgreSQL 13–17).
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/smokehouse smokehouse \
    && mkdir -m 0700 /data && chown smokehouse /data
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SMOKEHOUSE_DATA_DIR=/data \
    SMOKEHOUSE_HTTP_HOST=0.0.0.0
USER smokehouse
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["smokehouse", "health", "api"]
ENTRYPOINT ["smokehouse"]
CMD ["api"]
