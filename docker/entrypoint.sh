#!/bin/sh
# The one entry point of the image: every role starts here, in Docker Compose, in the Helm
# chart and in the tests (tests/test_entrypoint.py runs it with recording stand-ins for the
# programs it starts; tests/test_deploy_compose.py runs it for real against the test database),
# so the command a container runs is the command that was tested.
#
#   entrypoint.sh web | beat | streamer | collector
#   entrypoint.sh migrate | collectstatic | check | add-source NAME LOCATION [...]
#   entrypoint.sh manage COMMAND [...] | celery [...] | any other command (run as is)
#
# A role takes its shape from the environment, never from arguments, so the deployment files
# set variables only and the health checks read back what really runs (besides what
# telemetry_project/settings.py reads):
#   PORT, WEB_HOST, WEB_CONCURRENCY, WEB_TIMEOUT  web: gunicorn (8000, 0.0.0.0, 2, 60)
#   WEB_THREADS          web: threads per gthread worker (4; read by telemetry_project/gunicorn_config.py)
#   WORKER_QUEUES        streamer, collector: queues consumed (stream; collect)
#   WORKER_POOL          ... Celery pool: solo, prefork or threads (solo)
#   WORKER_CONCURRENCY   ... processes or threads of a prefork or threads pool (Celery: the CPUs)
#   WORKER_NAME          ... node name; %h is the host name (streamer@%h; collector@%h)
#   WORKER_HEARTBEAT_FILE  solo workers' liveness file (docker/worker-alive.sh)
#   WAIT_FOR_MIGRATIONS=1  long-running roles wait until the schema is current
#   WAIT_FOR_MIGRATIONS_TIMEOUT  ... for at most this many seconds (600)
#   TELEMETRY_RUN_DIR    scratch files of the process (/tmp/telemetry)
set -eu

cd "$(dirname "$0")/.."
RUN_DIR="${TELEMETRY_RUN_DIR:-/tmp/telemetry}"
LOG_LEVEL="${LOG_LEVEL:-INFO}"

usage() {
  echo "usage: entrypoint.sh web|beat|streamer|collector|migrate|collectstatic|check|add-source|manage|celery [ARG...]" >&2
  exit 64
}

# Remember what this container runs, for docker/healthcheck.sh and the probes. The PID is this
# shell's, which every role keeps: each ends by exec-ing its program, so the program receives
# SIGTERM itself (Celery's warm shutdown, gunicorn's graceful one).
record() {
  mkdir -p "$RUN_DIR"
  printf 'ROLE=%s\nPOOL=%s\nNODE=%s\nPID=%s\n' "$1" "$2" "$3" "$$" >"$RUN_DIR/process.env"
}

# Long-running roles started beside a migration (Helm hook) wait for the schema to be current.
wait_for_migrations() {
  [ "${WAIT_FOR_MIGRATIONS:-0}" = "1" ] || return 0
  deadline=$(($(date +%s) + ${WAIT_FOR_MIGRATIONS_TIMEOUT:-600}))
  until python manage.py migrate --check >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "entrypoint: migrations still missing (or the database unreachable) after ${WAIT_FOR_MIGRATIONS_TIMEOUT:-600}s" >&2
      python manage.py migrate --check || true
      exit 1
    fi
    echo "entrypoint: waiting for the database schema to be migrated"
    sleep 5
  done
}

# A Celery worker: the role gives the default queue and node name, the environment the rest.
worker() {
  role="$1"
  queues="${WORKER_QUEUES:-$2}"
  pool="${WORKER_POOL:-solo}"
  node="${WORKER_NAME:-$role@%h}"
  set -- --queues "$queues" --pool "$pool" --hostname "$node"
  if [ "$pool" = "solo" ]; then
    # The liveness signal of a pool that cannot answer pings while busy (ingest/heartbeat.py).
    export WORKER_HEARTBEAT_FILE="${WORKER_HEARTBEAT_FILE:-$RUN_DIR/worker-heartbeat}"
    rm -f "$WORKER_HEARTBEAT_FILE"
  elif [ -n "${WORKER_CONCURRENCY:-}" ]; then
    set -- "$@" --concurrency "$WORKER_CONCURRENCY"
  fi
  wait_for_migrations
  record "$role" "$pool" "$(printf '%s' "$node" | sed "s/%h/$(uname -n)/g")"
  # Mingle and gossip cost every worker a round trip to every other one; nothing here uses them.
  exec celery -A telemetry_project worker --loglevel "$LOG_LEVEL" \
    --without-mingle --without-gossip --without-heartbeat --include ingest.heartbeat "$@"
}

[ $# -ge 1 ] || usage
role="$1"
shift

case "$role" in
  web | beat | streamer | collector)
    if [ $# -gt 0 ]; then
      echo "entrypoint: $role takes no arguments (given: $*); set its variables instead (see the header of docker/entrypoint.sh)" >&2
      exit 64
    fi
    ;;
esac

case "$role" in
  web)
    wait_for_migrations
    record web - -
    # The config module runs prometheus_client's multiprocess mode across the workers.
    exec gunicorn telemetry_project.wsgi:application \
      --config python:telemetry_project.gunicorn_config \
      --bind "${WEB_HOST:-0.0.0.0}:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" \
      --timeout "${WEB_TIMEOUT:-60}" \
      --graceful-timeout 30 \
      --worker-tmp-dir /dev/shm \
      --access-logfile -
    ;;
  beat)
    wait_for_migrations
    record beat - -
    # The scheduler is django_celery_beat's DatabaseScheduler (settings): nothing on disk.
    exec celery -A telemetry_project beat --loglevel "$LOG_LEVEL"
    ;;
  streamer)
    worker streamer stream
    ;;
  collector)
    worker collector collect
    ;;
  migrate)
    exec python manage.py migrate --noinput "$@"
    ;;
  collectstatic)
    exec python manage.py collectstatic --noinput "$@"
    ;;
  check)
    exec python manage.py check --deploy "$@"
    ;;
  add-source)
    wait_for_migrations
    exec python manage.py add_source "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  celery)
    exec celery -A telemetry_project "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
