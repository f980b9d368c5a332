"""Speed of the bit-exact reference on the event-camera seed network, against snnTorch.

Run with ``python -m bench.reference_speed`` (about 1-2 minutes; ``--quick`` for a
smoke run). Prints a table and writes ``bench/results/reference_speed.json``.

What is measured
----------------
- Network: the seed network of the event-camera design at ``2 x 128 x 128`` input:
  conv 2->4 5x5 s2 p2, conv 4->8 5x5 s2 p2, conv 8->8 3x3 s2 p1, conv 8->16 3x3 s2 p1,
  linear 1024->11; 27,659 neurons, 13,992 weights; random 8-bit weights, 16-bit
  states, leak 15/16, subtract reset; ``T = 150`` steps of 10 ms.
- Input: one synthetic DVS-like stream of 300k events over 1.5 s (moving edges plus
  background noise), binned with ``count_clip = 1``.
- Three activity profiles: the threshold of every layer is found by bisection so that
  about 3 %, 8 % and 20 % of that layer's neurons fire per step.
- Backends, all on ONE thread (``NUMBA_NUM_THREADS``, ``OMP``/``MKL`` threads and
  ``torch.set_num_threads`` set to 1):

  * ``numba``: :func:`sim.kernels.run_numba` with ``record=False`` (scores, flags and
    counts only; the headline number) and with ``record=True`` (every spike and state of
    every step kept, as the dump needs). The model is packed once
    (:class:`sim.kernels.NumbaNetwork`, like building the torch module); its cost is
    reported separately.
  * ``numpy``: the vectorized NumPy backend, ``record=False``.
  * ``snntorch``: the same network in float32 torch (``nn.Conv2d``/``nn.Linear`` with
    the same integer weights, ``snntorch.Leaky`` with the same leak, thresholds and
    subtract reset), stepped over the 150 dense binned frames under ``no_grad``. It is
    not bit-exact (float), it is the speed baseline.

- Timing: the machine is shared and noisy, so each backend runs several times,
  interleaved, and the best time counts. The headline time is the process CPU time
  (single-threaded work, so it equals the wall time on an idle machine, but it does not
  count the time other processes hold the core); the best wall-clock time and the
  ratios from it are reported too. Figures are ratios within one run.

Reported per profile: firing rate, input events/s (raw events of the stream per second
of compute), input spikes/s (after binning), synaptic operations/s (weight additions
plus pooling additions, counted exactly by the reference), and the speed ratios
numba/snnTorch and numpy/snnTorch (``> 1``: faster than snnTorch).

- A version-2 graph of similar size (issue 12), at the 8 % profile, numba only:
  conv 2->4 5x5 s2 p2, conv 4->8 5x5 s2 p2, conv 8->8 3x3 s2 p1, a residual block
  (conv 8->8 3x3 s1 p1 plus an identity skip from the block's input), a recurrent
  conv 8->16 3x3 s2 p1 (plus a 16->16 3x3 conv from itself with delay 1) and a linear
  1024->11 with 4 taps (per-synapse heterogeneous delays 0-3, one non-zero tap per
  weight).

Targets: at the 8 % profile, the numba backend does at least 1.5e9 synaptic operations
per second on the camera net (issue 12; 1e9 in the foundation issue) and is at least 5x
faster than snnTorch.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from sim.events import EVENT_DTYPE, bin_events  # noqa: E402
from sim.kernels import NumbaNetwork, run_numba  # noqa: E402
from sim.randmodel import model_from_spec  # noqa: E402
from sim.reference import run  # noqa: E402

SPEC = [("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2), ("conv2d", 8, 3, 2, 1),
        ("conv2d", 16, 3, 2, 1), ("linear", 11)]
SHAPE = (2, 128, 128)
T = 150
DT_US = 10_000
N_EVENTS = 300_000
PROFILES = (0.03, 0.08, 0.20)
BETA = (15, 4)
TARGET_SYNOPS = 1.5e9
TARGET_RATIO = 5.0
RESULT = Path(__file__).resolve().parent / "results" / "reference_speed.json"


def dvs_like_events(shape, n, duration_us, rng, n_objects=5, noise=0.2):
    """A sorted synthetic event stream that looks like a DVS: moving ring-shaped edges
    (ON events on the leading side, OFF on the trailing side) plus uniform noise."""
    P, H, W = shape
    t = np.sort(rng.integers(0, duration_us, n))
    obj = rng.integers(0, n_objects, n)
    is_noise = rng.random(n) < noise
    start = rng.uniform(0, [W, H], size=(n_objects, 2))
    vel = rng.uniform(-1, 1, size=(n_objects, 2)) * rng.uniform(40, 120, (n_objects, 1))
    radius = rng.uniform(8, 22, n_objects)
    ang = rng.uniform(0, 2 * np.pi, n)
    r = radius[obj] + rng.normal(0, 1.5, n)
    sec = t / 1e6
    cx = start[obj, 0] + vel[obj, 0] * sec
    cy = start[obj, 1] + vel[obj, 1] * sec
    x = np.mod(np.rint(cx + r * np.cos(ang)), W)
    y = np.mod(np.rint(cy + r * np.sin(ang)), H)
    lead = np.cos(ang) * vel[obj, 0] + np.sin(ang) * vel[obj, 1] > 0
    p = lead.astype(np.int64) % P
    x = np.where(is_noise, rng.integers(0, W, n), x)
    y = np.where(is_noise, rng.integers(0, H, n), y)
    p = np.where(is_noise, rng.integers(0, P, n), p)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
    return ev


GRAPH_SPEC = [("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2), ("conv2d", 8, 3, 2, 1),
              ("conv2d", 8, 3, 1, 1), ("conv2d", 16, 3, 2, 1), ("linear", 11)]
GRAPH_TAPS = 4


def graph_model(rng):
    """The v2 benchmark graph: GRAPH_SPEC as a chain, then a residual skip into layer 4,
    a delayed recurrent conv on layer 5 and 4 taps on the linear layer."""
    from sim.model import Synapse, validate_model

    model = model_from_spec(GRAPH_SPEC, rng, input_shape=SHAPE, timesteps=T, dt_us=DT_US,
                            count_clip=1, beta=BETA)
    l3, res, rec, fc = model.layers[2:]

    def weights(shape):
        w = rng.integers(-127, 128, size=shape)
        return np.where(rng.random(shape) < 0.6, np.abs(w), w).astype(np.int64)

    res.synapses.append(Synapse(l3.name, "identity", weights=weights(8), weight_bits=8))
    rec.synapses.append(Synapse(rec.name, "conv2d", 3, 1, 1, weights((16, 16, 3, 3)), 8,
                                delay=1))
    syn = fc.synapse
    delay_of = rng.integers(0, GRAPH_TAPS, size=syn.weights.shape)
    syn.weights = np.where(np.arange(GRAPH_TAPS)[:, None, None] == delay_of[None],
                           syn.weights[None], 0)
    syn.taps = GRAPH_TAPS
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    return validate_model(model)


def graph_profile(rng, binned, target, reps):
    """Calibrate the graph to ``target`` and time the numba backend (record=False)."""
    model = graph_model(rng)
    run_numba(model, binned, record=False)                       # compile (or load cache)
    t0 = time.perf_counter()
    thresholds = calibrate(model, binned, target)
    t_cal = time.perf_counter() - t0
    net = NumbaNetwork(model)
    ref = run_numba(model, binned, record=False, network=net)
    best = wall = np.inf
    for _ in range(reps):
        out, best, wall = timed(lambda: run_numba(model, binned, record=False, network=net),
                                best, wall)
        assert out.spike_count == ref.spike_count
    synops = ref.total_synops
    return {
        "network": {"spec": [list(x) for x in GRAPH_SPEC], "input_shape": list(SHAPE),
                    "residual": f"identity {model.layers[2].name} -> {model.layers[3].name}",
                    "recurrent": f"conv2d 3x3 {model.layers[4].name} -> itself, delay 1",
                    "taps": f"linear into {model.layers[5].name}, {GRAPH_TAPS} taps, one "
                            f"non-zero tap per weight",
                    "neurons": model.n_neurons, "weights": model.n_weights,
                    "synapses": sum(len(layer.synapses) for layer in model.layers)},
        "target_rate": target,
        "firing_rate": sum(ref.spike_count.values()) / (T * model.n_neurons),
        "layer_rates": dict(zip([lay.name for lay in model.layers], layer_rates(model, ref))),
        "thresholds": thresholds, "calibration_s": t_cal,
        "synops": int(synops), "synops_per_layer": ref.synops,
        "time_s": best, "wall_s": wall, "synops_per_s": synops / best,
        "synops_per_s_wall": synops / wall,
    }


def cpu_name():
    """The processor's model name (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def layer_rates(model, result):
    return [result.spike_count[lay.name] / (T * lay.n_out) for lay in model.layers]


def calibrate(model, binned, target):
    """Set each layer's threshold (in order) so that about ``target`` of its neurons
    fire per step; bisection on the integer threshold with the numba backend."""
    for i, layer in enumerate(model.layers):
        lo, hi = 1, layer.state_max
        while lo < hi:
            mid = (lo + hi) // 2
            layer.threshold[:] = mid
            rate = layer_rates(model, run_numba(model, binned, record=False))[i]
            if rate > target:
                lo = mid + 1
            else:
                hi = mid
        # of the two thresholds around the target, keep the closer one
        best = None
        for th in (lo - 1, lo):
            if th < 1:
                continue
            layer.threshold[:] = th
            rate = layer_rates(model, run_numba(model, binned, record=False))[i]
            if best is None or abs(rate - target) < best[0]:
                best = (abs(rate - target), th)
        layer.threshold[:] = best[1]
    return [int(layer.threshold[0]) for layer in model.layers]


def snntorch_net(model):
    """The same network in float torch + snnTorch (a speed baseline, not bit-exact)."""
    import snntorch as snn
    import torch
    from torch import nn

    mods = []
    for layer in model.layers:
        if layer.type == "conv2d":
            m = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding,
                          bias=False)
        else:
            m = nn.Linear(layer.n_in, layer.n_out, bias=False)
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(layer.weights, dtype=torch.float32))
        beta = layer.beta_num / (1 << layer.beta_frac_bits)
        lif = snn.Leaky(beta=beta, threshold=float(layer.threshold[0]),
                        reset_mechanism="subtract")
        mods.append((m, lif, layer.type == "linear"))

    def forward(frames):
        mems = [lif.init_leaky() for _, lif, _ in mods]
        count = None
        for k in range(frames.shape[0]):
            x = frames[k]
            for i, (m, lif, flat) in enumerate(mods):
                if flat:
                    x = x.flatten(1)
                x, mems[i] = lif(m(x), mems[i])
            count = x if count is None else count + x
        return count

    return forward


def timed(fn, best, best_wall):
    """Run ``fn``; return its output and the updated best CPU and wall-clock times."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    c1, w1 = time.process_time(), time.perf_counter()
    return out, min(best, c1 - c0), min(best_wall, w1 - w0)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.reference_speed",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=25,
                    help="timed runs of the numba backend per profile")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (fewer repeats)")
    ap.add_argument("--no-snntorch", action="store_true", help="skip the snnTorch baseline")
    ap.add_argument("--output", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    reps = 2 if args.quick else max(1, args.repeats)
    # timed runs per backend (the NumPy backend takes about a second per run)
    n_runs = {"numba": reps, "numba_record": 1 if args.quick else 5,
              "snntorch": 1 if args.quick else 5, "numpy": 1 if args.quick else 3}

    versions = {"numpy": np.__version__}
    import numba
    versions["numba"] = numba.__version__
    if not args.no_snntorch:
        try:
            import snntorch
            import torch
            torch.set_num_threads(1)
            versions["torch"] = torch.__version__
            versions["snntorch"] = snntorch.__version__
        except ImportError as exc:  # the torch extra is optional
            print(f"snnTorch baseline skipped: {exc}", file=sys.stderr)
            args.no_snntorch = True

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(f"load average at start: {load_start}")
    rng = np.random.default_rng(2024)
    model = model_from_spec(SPEC, rng, input_shape=SHAPE, timesteps=T, dt_us=DT_US,
                            count_clip=1, beta=BETA)
    ev = dvs_like_events(SHAPE, N_EVENTS, T * DT_US, rng)
    binned = bin_events(ev, SHAPE, T, DT_US, count_clip=1)
    frames = binned.to_frames().astype(np.float32)               # (T, P, H, W)

    print(f"seed network: {model.n_neurons} neurons, {model.n_weights} weights, T={T}; "
          f"stream: {binned.n_events} events -> {binned.n_spikes} input spikes "
          f"({binned.n_clipped} merged by count clipping, {binned.n_dropped} dropped)")
    run_numba(model, binned, record=False)                       # compile (or load cache)

    profiles = []
    for target in PROFILES:
        t0 = time.perf_counter()
        thresholds = calibrate(model, binned, target)
        t_cal = time.perf_counter() - t0
        t0 = time.perf_counter()
        net = NumbaNetwork(model)
        t_pack = time.perf_counter() - t0
        ref = run_numba(model, binned, record=False, network=net)
        forward = None
        if not args.no_snntorch:
            import torch
            forward = snntorch_net(model)
            x = torch.from_numpy(frames).unsqueeze(1)               # (T, 1, P, H, W)
        jobs = {
            "numba": lambda: run_numba(model, binned, record=False, network=net),
            "numba_record": lambda: run_numba(model, binned, record=True, network=net),
            "numpy": lambda: run(model, binned, record=False, backend="numpy"),
        }
        if forward is not None:
            def snn_job():
                with torch.no_grad():
                    return forward(x)
            jobs["snntorch"] = snn_job
            snn_job()                                               # warm-up
        best = {k: np.inf for k in ("numba", "numba_record", "numpy", "snntorch")}
        wall = dict(best)
        snn_rate = None
        for rep in range(max(n_runs.values())):
            for name, job in jobs.items():
                if rep >= n_runs[name]:
                    continue
                out, best[name], wall[name] = timed(job, best[name], wall[name])
                if name == "numba":
                    assert out.spike_count == ref.spike_count
                if name == "snntorch":
                    snn_rate = float(out.sum()) / (T * model.n_classes)
        rates = layer_rates(model, ref)
        rate = sum(ref.spike_count.values()) / (T * model.n_neurons)
        synops = ref.total_synops
        entry = {
            "target_rate": target,
            "firing_rate": rate,
            "layer_rates": dict(zip([lay.name for lay in model.layers], rates)),
            "thresholds": thresholds,
            "input_events": int(binned.n_events),
            "input_spikes": int(binned.n_spikes),
            "synops": int(synops),
            "synops_per_layer": ref.synops,
            "calibration_s": t_cal,
            "pack_s": t_pack,
            "time_s": {k: (None if not np.isfinite(v) else v) for k, v in best.items()},
            "wall_s": {k: (None if not np.isfinite(v) else v) for k, v in wall.items()},
        }
        per = {}
        for k, v in best.items():
            if np.isfinite(v):
                per[k] = {"events_per_s": binned.n_events / v,
                          "input_spikes_per_s": binned.n_spikes / v,
                          "synops_per_s": synops / v}
        entry["throughput"] = per
        if np.isfinite(best["snntorch"]):
            entry["speedup_vs_snntorch"] = {
                k: best["snntorch"] / best[k] for k in ("numba", "numba_record", "numpy")}
            entry["speedup_vs_snntorch_wall"] = {
                k: wall["snntorch"] / wall[k] for k in ("numba", "numba_record", "numpy")}
            entry["snntorch_output_rate"] = snn_rate
        profiles.append(entry)
        print(f"profile {target:.0%}: thresholds {thresholds}, calibration {t_cal:.1f} s")

    # -- table --------------------------------------------------------------------------
    head = (f"{'profile':>7} {'rate':>6} {'synops':>9} | {'backend':<13} {'cpu ms':>8} "
            f"{'Mev/s':>7} {'Gsynop/s':>8} {'x snnTorch':>10} | {'wall ms':>8} {'x (wall)':>8}")
    print()
    print(head)
    print("-" * len(head))
    for p in profiles:
        first = True
        for k in ("numba", "numba_record", "numpy", "snntorch"):
            t = p["time_s"][k]
            if t is None:
                continue
            label = {"numba": "numba", "numba_record": "numba+record", "numpy": "numpy",
                     "snntorch": "snnTorch"}[k]
            sp = p.get("speedup_vs_snntorch", {}).get(k, 1.0 if k == "snntorch" else None)
            sp_s = f"{sp:10.2f}" if sp is not None else f"{'-':>10}"
            spw = p.get("speedup_vs_snntorch_wall", {}).get(k, 1.0 if k == "snntorch" else None)
            spw_s = f"{spw:8.2f}" if spw is not None else f"{'-':>8}"
            pre = (f"{p['target_rate']:>7.0%} {p['firing_rate']:>6.3f} {p['synops'] / 1e6:>8.1f}M"
                   if first else " " * 25)
            print(f"{pre} | {label:<13} {t * 1e3:8.1f} {p['input_events'] / t / 1e6:7.2f} "
                  f"{p['synops'] / t / 1e9:8.3f} {sp_s} | {p['wall_s'][k] * 1e3:8.1f} {spw_s}")
            first = False

    graph = graph_profile(np.random.default_rng(2025), binned, 0.08, n_runs["numba"])
    print(f"\nv2 graph (residual block, recurrent conv, 4-tap linear) at 8 %: rate "
          f"{graph['firing_rate']:.3f}, {graph['synops'] / 1e6:.1f}M synops, "
          f"{graph['time_s'] * 1e3:.1f} ms, {graph['synops_per_s'] / 1e9:.3f} Gsynop/s (numba)")

    main_p = next(p for p in profiles if p["target_rate"] == 0.08)
    synops_s = main_p["throughput"]["numba"]["synops_per_s"]
    ratio = main_p.get("speedup_vs_snntorch", {}).get("numba")
    targets = {
        "profile": 0.08,
        "synops_per_s": synops_s, "synops_per_s_target": TARGET_SYNOPS,
        "synops_met": synops_s >= TARGET_SYNOPS,
        "speedup_vs_snntorch": ratio, "speedup_target": TARGET_RATIO,
        "speedup_met": None if ratio is None else ratio >= TARGET_RATIO,
        "timer": "process CPU time, best of N",
        "synops_per_s_wall": main_p["synops"] / main_p["wall_s"]["numba"],
        "speedup_vs_snntorch_wall": main_p.get("speedup_vs_snntorch_wall", {}).get("numba"),
    }
    print()
    print(f"targets at 8 %: {synops_s / 1e9:.2f} Gsynop/s (>= {TARGET_SYNOPS / 1e9:.1f}: "
          f"{'met' if targets['synops_met'] else 'NOT met'}), "
          + ("snnTorch not run" if ratio is None else
             f"{ratio:.1f}x snnTorch (>= 5: {'met' if targets['speedup_met'] else 'NOT met'})"))

    out = {
        "benchmark": "reference_speed",
        "command": "python -m bench.reference_speed" + (" --quick" if args.quick else ""),
        "network": {"spec": [list(s) for s in SPEC], "input_shape": list(SHAPE),
                    "timesteps": T, "dt_us": DT_US, "neurons": model.n_neurons,
                    "weights": model.n_weights, "weight_bits": 8, "state_bits": 16,
                    "beta": list(BETA), "reset": "subtract", "count_clip": 1},
        "stream": {"events": int(binned.n_events), "input_spikes": int(binned.n_spikes),
                   "merged_by_clipping": int(binned.n_clipped), "kind": "dvs_like_events"},
        "method": ("one thread; best of N interleaved runs, process CPU time (wall time "
                   "also given); numba headline is record=False "
                   "(no per-step traces), numba_record keeps every spike and state; "
                   "packing the model (pack_s) excluded like building the torch module"),
        "repeats": n_runs,
        "machine": {"platform": platform.platform(), "processor": cpu_name(),
                    "cpus": os.cpu_count(), "load_average_at_start": load_start,
                    "load_average_at_end": (list(os.getloadavg())
                                            if hasattr(os, "getloadavg") else None),
                    "python": platform.python_version(), **versions},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profiles": profiles,
        "graph_v2": graph,
        "targets": targets,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.output.parent, delete=False,
                                     suffix=".tmp") as fh:
        json.dump(out, fh, indent=1, default=float)
        tmp = fh.name
    shutil.move(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
