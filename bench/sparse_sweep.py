"""Activity-proportional sweep (issue 15): the dense sweep against the sparse one.

Run with ``python -m bench.sparse_sweep [--gesture-limit N] [--digits-limit N]
[--quick]``. Prints a table and writes ``bench/results/sparse_sweep.json`` and
``bench/results/sparse_sweep.png`` (``--out`` elsewhere).

The designs are measured in one run: :class:`hw.network.Network` with ``sweep="dense"``
(every state word every step, the design before issue 15), ``sweep="sparse"`` (the
listed words only, :mod:`hw.livelist`; the default) and ``banked`` (the sparse sweep
with the first conv layers split over banks of neuron cores by output column,
:data:`BANKS`, ``hw.layer`` "Banks": ``hw.build --banks conv1=3,conv2=3,conv3=2``; only
for the models that have those layers), with default lanes and FIFO depth 16, through
the cycle model :func:`sim.cycles.predict` (equal to the RTL cycle for cycle:
tests/hw/test_network_cycles.py), input words back to back, at 100 MHz.

What is measured
----------------
- ``shipped``: ``gesture_synth`` and ``digits``, every sample of their test splits
  (``--*-limit`` for fewer): latency per sample (first input word offered to ``done``),
  mean/min/max; the state words the sweeps read; energy per inference
  (:mod:`boards.energy` with the sweep work done, :func:`boards.energy.mean_sweep_counts`)
  and the dense-equivalent ratio of the sweep work (``T*N`` neuron updates over those
  done).
- ``camera``: the event-camera seed network (conv 2->4 5x5 s2 p2, conv 4->8 5x5 s2 p2,
  conv 8->8 3x3 s2 p1, conv 8->16 3x3 s2 p1, linear 1024->11; random 8-bit weights,
  16-bit states, leak 15/16, subtract reset, no bias; 27,659 neurons) on a synthetic
  DVS-like stream (:func:`bench.reference_speed.dvs_like_events`) of ``T = 16`` steps
  of 10 ms, at three activities ``a`` = 3 %, 8 %, 20 %: the stream has
  ``a x 2 x 128 x 128`` events per step (count clipping merges some: ``input_density``
  records what is left), and every layer's threshold is set by bisection
  (:func:`bench.reference_speed.calibrate`) so that about ``a`` of its neurons fire per
  step (``firing_rates`` records the rates reached). Per activity: latency and energy of
  one sample, both designs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sim.cli import ArgumentParser, CliError, atomic_path, run_main

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "sparse_sweep.json"
CLOCK_HZ = 100e6
SWEEPS = ("dense", "sparse")
#: the banks of the ``banked`` design, by layer name (the layers a model has)
BANKS = {"conv1": 3, "conv2": 3, "conv3": 2}
#: every design: its sweep and whether it has the banks
DESIGNS = {"dense": ("dense", False), "sparse": ("sparse", False), "banked": ("sparse", True)}
ACTIVITIES = (0.03, 0.08, 0.20)
CAMERA_T = 16
CAMERA_DT_US = 10_000
CAMERA_SHAPE = (2, 128, 128)
#: targets of the issue (cycle model = RTL, 100 MHz)
TARGET_GESTURE_US = 205.0
TARGET_DIGITS_US = 39.4

__all__ = ["measure", "shipped", "camera", "main", "model_banks", "designs"]


def model_banks(model):
    """:data:`BANKS` restricted to the layers ``model`` has (``{}``: none)."""
    names = {layer.name for layer in model.layers}
    return {k: v for k, v in BANKS.items() if k in names}


def designs(model):
    """The designs measured on ``model``: dense and sparse, and banked where
    :func:`model_banks` names a layer."""
    return [d for d in DESIGNS if not DESIGNS[d][1] or model_banks(model)]


def measure(model, binned, sweep, res=None, fifo_depth=16, banks=None):
    """Latency (cycles), words swept per layer, and the energy of one sample with
    ``sweep`` (and ``banks``, :func:`sim.geometry.banks_of`); ``res``: the reference run of
    the sample (``record=True``) when known."""
    from boards.energy import compare, mean_sweep_counts
    from sim.cycles import HwParams, predict
    from sim.reference import run
    rep = predict(model, binned, HwParams(fifo_depth=fifo_depth, sweep=sweep, banks=banks))
    res = res if res is not None else run(model, binned, record=True)
    swept = mean_sweep_counts(model, [binned], [res], sweep=sweep)
    assert [s["words"] for s in swept] == rep.swept, "sweep_counts != cycle model"
    c = compare(model, res, swept=swept)
    upd = sum(s["neurons"] for s in swept)
    dense_upd = sum(s["dense_neurons"] for s in swept)
    return {"latency_cycles": rep.latency_cycles(0), "swept_words": rep.swept,
            "sparse_layers": rep.sparse, "energy_nj": c["snn_pj"] / 1e3,
            "fnn_nj": c["fnn_pj"] / 1e3, "neuron_updates": upd,
            "dense_neuron_updates": dense_upd, "prediction": int(res.prediction)}


def _summary(rows, model):
    lat = np.array([r["latency_cycles"] for r in rows], dtype=float)
    en = np.array([r["energy_nj"] for r in rows])
    upd = sum(r["neuron_updates"] for r in rows)
    dense = sum(r["dense_neuron_updates"] for r in rows)
    return {"samples": len(rows), "latency_cycles_mean": float(lat.mean()),
            "latency_cycles_min": float(lat.min()), "latency_cycles_max": float(lat.max()),
            "latency_us_mean": float(lat.mean() / CLOCK_HZ * 1e6),
            "energy_nj_mean": float(en.mean()), "fnn_nj": rows[0]["fnn_nj"],
            "fnn_over_snn": rows[0]["fnn_nj"] / float(en.mean()),
            "neuron_updates_per_sample": upd / len(rows),
            "dense_over_swept": dense / upd if upd else None,
            "swept_words_per_sample": [float(np.mean([r["swept_words"][i] for r in rows]))
                                       for i in range(len(model.layers))],
            "sparse_layers": rows[0]["sparse_layers"]}


def shipped(name, limit=None, dense_limit=None, log=print):
    """Both designs on the test split of a shipped model (the dense one on the first
    ``dense_limit`` samples only, when given)."""
    from bench.e2e import load_data
    from sim.model import load_model
    from sim.reference import run
    d = ROOT / "models" / name
    model = load_model(d)
    data, _ = load_data(d, model, limit)
    names = designs(model)
    banks = model_banks(model)
    rows = {s: [] for s in names}
    for i in range(len(data)):
        b = data.binned(i)
        res = run(model, b, record=True)
        for s in names:
            if s == "dense" and dense_limit is not None and i >= dense_limit:
                continue
            sweep, banked = DESIGNS[s]
            rows[s].append(measure(model, b, sweep, res, banks=banks if banked else None))
        if (i + 1) % 20 == 0:
            log(f"  {name}: {i + 1}/{len(data)} samples")
    out = {s: _summary(rows[s], model) for s in names}
    if "banked" in names:
        out["banks"] = banks
    n = len(rows["dense"])
    out["same_predictions"] = all(rows[s][j]["prediction"] == r["prediction"]
                                  for j, r in enumerate(rows["dense"]) for s in names)
    # speed-up on the samples both designs ran
    out["speedup_samples"] = n
    dense = np.mean([r["latency_cycles"] for r in rows["dense"]])
    out["speedup"] = dense / np.mean([r["latency_cycles"] for r in rows["sparse"][:n]])
    if "banked" in names:
        out["banked_speedup"] = dense / np.mean([r["latency_cycles"]
                                                 for r in rows["banked"][:n]])
    out["latency_cycles"] = {s: [r["latency_cycles"] for r in rows[s]] for s in names}
    return out


def camera_case(activity, seed=2024):
    """The camera seed network and one sample at ``activity`` (see the module docstring)."""
    import bench.reference_speed as rs
    from bench.reference_speed import BETA, SPEC, calibrate, dvs_like_events
    from sim.events import bin_events
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng(seed)
    model = model_from_spec(SPEC, rng, input_shape=CAMERA_SHAPE, timesteps=CAMERA_T,
                            dt_us=CAMERA_DT_US, count_clip=1, beta=BETA)
    for layer in model.layers:
        layer.bias = None
    n = int(activity * np.prod(CAMERA_SHAPE) * CAMERA_T)
    ev = dvs_like_events(CAMERA_SHAPE, n, CAMERA_T * CAMERA_DT_US, rng)
    binned = bin_events(ev, CAMERA_SHAPE, CAMERA_T, CAMERA_DT_US, count_clip=1)
    # calibrate's rates divide by reference_speed's own T (150 steps): use ours
    saved, rs.T = rs.T, CAMERA_T
    try:
        thresholds = calibrate(model, binned, activity)
    finally:
        rs.T = saved
    return model, binned, thresholds


def camera(activities=ACTIVITIES, log=print):
    out = []
    for a in activities:
        from sim.reference import run
        model, binned, thresholds = camera_case(a)
        res = run(model, binned, record=True)
        row = {"activity": a, "input_spikes": binned.n_spikes,
               "input_density": binned.n_spikes / (np.prod(CAMERA_SHAPE) * CAMERA_T),
               "thresholds": thresholds,
               "firing_rates": [res.spike_count[ly.name] / (CAMERA_T * ly.n_out)
                                for ly in model.layers]}
        banks = model_banks(model)
        for s in designs(model):
            sweep, banked = DESIGNS[s]
            row[s] = measure(model, binned, sweep, res, banks=banks if banked else None)
            row[s]["latency_us"] = row[s]["latency_cycles"] / CLOCK_HZ * 1e6
        row["banks"] = banks
        row["speedup"] = row["dense"]["latency_cycles"] / row["sparse"]["latency_cycles"]
        row["banked_speedup"] = row["dense"]["latency_cycles"] / row["banked"]["latency_cycles"]
        row["energy_ratio"] = row["dense"]["energy_nj"] / row["sparse"]["energy_nj"]
        log(f"  camera {a:.0%}: " + ", ".join(
            f"{s} {row[s]['latency_us']:.1f} us {row[s]['energy_nj']:.0f} nJ"
            for s in designs(model)))
        out.append(row)
    return out


def plot(doc, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = doc["camera"]
    x = [100 * r["activity"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = {"dense": "dense sweep", "sparse": "sparse sweep",
              "banked": "sparse sweep, banks " + ",".join(f"{k}={v}" for k, v in BANKS.items())}
    for s, mark in zip(DESIGNS, ("o--", "s-", "^-")):
        if not all(s in r for r in rows):
            continue
        ax[0].plot(x, [r[s]["latency_us"] for r in rows], mark, label=labels[s])
        ax[1].plot(x, [r[s]["energy_nj"] for r in rows], mark, label=labels[s])
    ax[0].set_ylabel("latency per sample (µs, 100 MHz)")
    ax[1].set_ylabel("energy per sample (nJ, boards.energy)")
    for a in ax:
        a.set_xlabel("activity (% of neurons / input pixels per step)")
        a.set_xticks(x)
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"event-camera seed net, T = {CAMERA_T} steps: dense vs sparse sweep vs banks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench.sparse_sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--gesture-limit", type=int, default=None,
                    help="first N gesture_synth test samples (default: all)")
    ap.add_argument("--digits-limit", type=int, default=None,
                    help="first N digits test samples (default: all)")
    ap.add_argument("--dense-limit", type=int, default=None,
                    help="run the dense sweep on the first N samples of each shipped model "
                         "only (the sparse one on all)")
    ap.add_argument("--only", nargs="+", choices=["digits", "gesture_synth", "camera"],
                    default=["digits", "gesture_synth", "camera"],
                    help="the parts to run; the others are kept from --out when it exists")
    ap.add_argument("--quick", action="store_true",
                    help="4 samples of each model and the 3 %% camera case only")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    for opt in ("gesture_limit", "digits_limit", "dense_limit"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise CliError(f"--{opt.replace('_', '-')}: {v} must be at least 1")
    g_lim = 4 if args.quick else args.gesture_limit
    d_lim = 4 if args.quick else args.digits_limit
    t0 = time.time()
    try:
        old = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError as e:
        raise CliError(f"{out}: not a JSON file ({e.msg})") from None
    doc = {"benchmark": "sparse_sweep", "clock_hz": CLOCK_HZ,
           "method": "sim.cycles.predict (= RTL), default lanes, fifo_depth 16, input words "
                     "back to back; energy boards.energy with the sweep work done",
           "targets": {"gesture_synth_latency_us": TARGET_GESTURE_US,
                       "digits_latency_us": TARGET_DIGITS_US}}
    doc["shipped"] = dict(old.get("shipped", {}))
    doc["commands"] = dict(old.get("commands", {}))
    words = list(argv if argv is not None else sys.argv[1:])
    if "--out" in words:                  # the command without a local output path
        j = words.index("--out")
        del words[j:j + 2]
    cmd = " ".join(["python -m bench.sparse_sweep", *words])
    for name, lim in (("digits", d_lim), ("gesture_synth", g_lim)):
        if name not in args.only:
            continue
        print(f"{name} ...", flush=True)
        doc["shipped"][name] = r = shipped(name, lim, args.dense_limit,
                                           log=lambda m: print(m, flush=True))
        doc["commands"][name] = cmd
        banked = (f", banked {r['banked']['latency_us_mean']:.1f} us "
                  f"({r['banked_speedup']:.2f}x)" if "banked" in r else "")
        print(f"  dense {r['dense']['latency_us_mean']:.1f} us, sparse "
              f"{r['sparse']['latency_us_mean']:.1f} us ({r['speedup']:.2f}x){banked}; energy "
              f"{r['dense']['energy_nj_mean']:.0f} -> {r['sparse']['energy_nj_mean']:.0f} nJ; "
              f"dense-equivalent {r['sparse']['dense_over_swept']:.2f}", flush=True)
    doc["camera"] = old.get("camera", [])
    if "camera" in args.only:
        print("camera ...", flush=True)
        doc["camera"] = camera(ACTIVITIES[:1] if args.quick else ACTIVITIES,
                               log=lambda m: print(m, flush=True))
        doc["commands"]["camera"] = cmd
    # parts may run in parallel processes: merge with what the file holds now
    try:
        now = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError:
        now = {}
    for name, r in now.get("shipped", {}).items():
        if name not in args.only:
            doc["shipped"][name] = r
            doc["commands"][name] = now.get("commands", {}).get(name)
    if "camera" not in args.only and now.get("camera"):
        doc["camera"] = now["camera"]
        doc["commands"]["camera"] = now.get("commands", {}).get("camera")
    old = now
    doc["seconds"] = dict(old.get("seconds", {})) if isinstance(old.get("seconds"), dict) \
        else {}
    doc["seconds"][" ".join(args.only)] = round(time.time() - t0, 1)
    doc["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    doc["command"] = "; ".join(sorted(set(doc["commands"].values())))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.chmod(tmp, 0o644)
    if doc["camera"]:
        plot(doc, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench.sparse_sweep")
