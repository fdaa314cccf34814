#!/bin/sh
# The image's HEALTHCHECK: picks the check that fits the role docker/entrypoint.sh started.
#   web                  GET /health (database and broker answer) on the local gunicorn
#   streamer, collector  a fresh heartbeat (solo pool) or an inspect ping (other pools)
#   beat                 its process is running
set -eu

cd "$(dirname "$0")/.."
# shellcheck source=docker/process-env.sh
. docker/process-env.sh

case "$ROLE" in
  web)
    exec python - <<'PYTHON'
import os, sys, urllib.request

request = urllib.request.Request(
    f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health", headers={"Host": "localhost"}
)
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(response.status, response.read().decode())
except Exception as error:  # an HTTPError (503) or a refused connection alike
    print(error)
    sys.exit(1)
PYTHON
    ;;
  streamer | collector)
    if [ "$POOL" = "solo" ]; then
      exec docker/worker-alive.sh
    fi
    exec docker/worker-ping.sh
    ;;
  beat)
    kill -0 "$PID"
    ;;
  *)
    echo "no health check for role $ROLE"
    exit 1
    ;;
esac
