# syntax=docker/dockerfile:1
# Fieldwatch: one image for every role. The role comes from FIELDWATCH_ROLE
# (api, gateway, worker, all; default all) or `fieldwatch serve --role ROLE`; the schema
# is migrated by a one-shot `fieldwatch db upgrade` before the processes start
# (docs/deployment.md).
#
#   docker build -t fieldwatch:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the package and its dependencies in a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/fieldwatch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A regular (not editable) install: the console's templates, scripts, styles and the
# vendored front-end files are package data, installed with the code.
RUN /opt/fieldwatch/bin/pip install . \
    && /opt/fieldwatch/bin/python -c "from importlib.resources import files; \
root = files('fieldwatch'); \
need = ('static/console/live.js', 'static/vendor/README.md', 'console/templates/base.html'); \
missing = [n for n in need if not root.joinpath(n).is_file()]; \
assert not missing, missing" \
    && /opt/fieldwatch/bin/fieldwatch --version

# --- runtime: the virtual environment on a slim base, as an unprivileged user -------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="Fieldwatch" \
      org.opencontainers.image.description="Open-source IoT fleet platform" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 fieldwatch \
    && useradd --system --uid 10001 --gid fieldwatch --no-create-home \
        --home-dir /var/lib/fieldwatch --shell /usr/sbin/nologin fieldwatch \
    && install -d -o fieldwatch -g fieldwatch -m 0755 /var/lib/fieldwatch
COPY --from=build /opt/fieldwatch /opt/fieldwatch
ENV PATH=/opt/fieldwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FIELDWATCH_ENV=production \
    FIELDWATCH_HOST=0.0.0.0 \
    FIELDWATCH_PORT=8000 \
    FIELDWATCH_DATA_DIR=/var/lib/fieldwatch \
    FIELDWATCH_LOG_FORMAT=json
WORKDIR /var/lib/fieldwatch
USER 10001:10001
EXPOSE 8000
# Liveness: the process's event loop answers (no I/O). Every role serves it on
# FIELDWATCH_PORT. (Readiness, /health/ready, is for load balancers: see compose.yaml.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('FIELDWATCH_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["fieldwatch"]
CMD ["serve"]
