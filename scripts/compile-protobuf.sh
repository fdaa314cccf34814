#!/usr/bin/env bash
# Compile the project's .proto files into Python modules (and their type stubs) under OUT_DIR
# (default: the repository itself, where the generated modules are committed). The test of
# the committed modules runs this into a temporary folder and compares.
#   PYTHON=.venv/bin/python scripts/compile-protobuf.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=${1:-.}
mkdir -p "$out_dir"
# --proto_path=. names the file ingest/remote_write.proto in the descriptor pool, a name no
# other library registers.
"${PYTHON:-python3}" -m grpc_tools.protoc --proto_path=. \
  --python_out="$out_dir" --pyi_out="$out_dir" ingest/remote_write.proto
