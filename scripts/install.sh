#!/usr/bin/env bash
# Quick start, part 1: create .venv, install the project and its pinned dependencies.
# torch is installed first and pinned, so that nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[torch]'
bash scripts/warm_yowasp.sh
echo "installed into $(pwd)/.venv"
