# One image for every role of the pipeline: docker/entrypoint.sh picks it (web, beat, streamer,
# collector, migrate, ...). The tests run that same script, so a container runs what was tested.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- dependencies, in a virtualenv copied whole into the runtime stage ---------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.txt

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=telemetry_project.settings \
    TELEMETRY_RUN_DIR=/tmp/telemetry \
    PORT=8000

RUN groupadd --system --gid 10001 telemetry \
    && useradd --system --uid 10001 --gid telemetry --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin telemetry

WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
# The code, the scripts and the bundled sample CSV (see .dockerignore), owned by root: the
# application user can read them, not change them.
COPY . .

# Static files are collected at build time (whitenoise serves them from STATIC_ROOT). Settings
# need a secret key and, without DATABASE_URL, make an embedded var/ folder: both exist for
# this step only.
RUN DJANGO_SECRET_KEY=collectstatic-at-build-time TELEMETRY_VAR_DIR=/tmp/build-var \
        TELEMETRY_RUN_DIR=/tmp/build-run docker/entrypoint.sh collectstatic \
    && rm -rf /tmp/build-var /tmp/build-run \
    && python -m compileall -q telemetry_project ingest api dashboard

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["/app/docker/healthcheck.sh"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
