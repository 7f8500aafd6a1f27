# syntax=docker/dockerfile:1
# Build stage: the wheel (it carries config/ and policies/ as packaged defaults) and the
# wheels of its dependencies, so the runtime stage installs offline and has no build tools.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY config ./config
COPY policies ./policies
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[redis]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels 'customers-api[redis]'
# Relative paths in config resolve against the working directory /app: config/ (mount your
# own over /app/config, or use CUSTOMERS__SECTION__KEY env vars), var/ and .local/ for the
# embedded profile's database and keys, writable by the non-root user only.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/config /app/var /app/.local \
    && chown app:app /app/var /app/.local
WORKDIR /app
COPY config/compose.yaml config/compose.yaml
USER app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2)"]
ENTRYPOINT ["customers-api"]
CMD ["serve", "--config", "config/compose.yaml"]
