"""Latency, samples/s and real-time factor of the version-2 targets, and the digits check.

What is measured (cycle model :func:`sim.cycles.predict`, which the RTL matches cycle for
cycle: tests/hw/test_network_cycles.py; at :data:`CLOCK_HZ`):

* the version-2 target graphs of :mod:`bench.v2_models` (``sts_resnet``, ``delay_net``,
  ``recurrent_net``) on ``--samples`` random inputs each (:func:`bench.v2_models.sample`:
  8 % of the input positions active per step, seeds ``--seed``, ``--seed`` + 1, ...),
  default lanes, FIFO depth 16, input words back to back: latency (first word offered
  to ``done``), samples/s, and the real-time factor (stream duration ``T x dt`` over the
  latency: above 1 the accelerator keeps up with the sensor);
* ``models/digits`` on its whole test split: the mean latency must stay within
  :data:`DIGITS_TOLERANCE` of :data:`DIGITS_BASELINE_US` (the ``bench.e2e`` figure of the
  RTL before the graph hardware, dense sweep).

Both for the sparse (default) and the dense sweep of the neuron cores (``--sweep-mode``).

Run: ``python -m bench.v2_latency [--only NAME ... | digits] [--samples N] [--sweep-mode
sparse|dense|both] [--digits-limit N]``; prints a table and writes
``bench/results/v2_latency.json`` (``--out`` elsewhere; the entries of a partial run
replace only their own). Several minutes on two cores (the digits split is 360
samples per sweep mode).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.cli import ArgumentParser, CliError, atomic_path, run_main  # noqa: E402

CLOCK_HZ = 100e6
#: ``bench.e2e``'s digits latency (mean of the 360 test samples, RTL = cycle model, dense
#: sweep) before the graph hardware: 3,942.72 cycles.
DIGITS_BASELINE_US = 39.427
DIGITS_TOLERANCE = 0.05
SWEEPS = ("sparse", "dense")
DEFAULT_SAMPLES = 4

__all__ = ["measure", "v2_latency", "digits_latency", "main", "CLOCK_HZ",
           "DIGITS_BASELINE_US"]


def measure(model, samples, sweep, *, lanes=None):
    """Cycle-model latency of ``model`` on each :class:`sim.events.BinnedEvents` of
    ``samples`` (input words back to back from cycle 0, one sample per run).

    Returns
    -------
    dict
        ``sweep``, ``lanes`` (per layer), ``samples``, ``input_spikes`` (mean per
        sample), ``latency_cycles`` (per sample), ``latency_cycles_mean``/``_min``/
        ``_max``, ``latency_us_mean``, ``samples_per_s``, ``stream_duration_s``
        (``T x dt``), ``real_time_factor`` (stream duration / mean latency).
    """
    from sim.cycles import HwParams, predict
    from sim.geometry import lanes_of
    params = HwParams(lanes=lanes, sweep=sweep)
    lat = [int(predict(model, b, params).latency_cycles(0)) for b in samples]
    mean = float(np.mean(lat))
    t = mean / CLOCK_HZ
    dur = model.input.timesteps * model.input.dt_us * 1e-6
    return {"sweep": sweep, "lanes": [int(x) for x in lanes_of(model, lanes)],
            "samples": len(lat),
            "input_spikes": float(np.mean([int(b.n_spikes) for b in samples])),
            "latency_cycles": lat, "latency_cycles_mean": mean,
            "latency_cycles_min": min(lat), "latency_cycles_max": max(lat),
            "latency_us_mean": t * 1e6, "samples_per_s": 1 / t,
            "stream_duration_s": dur, "real_time_factor": dur / t}


def v2_latency(names, n_samples=DEFAULT_SAMPLES, sweeps=SWEEPS, seed=0, log=print):
    """:func:`measure` for each version-2 target of ``names`` (keys of
    :data:`bench.v2_models.MODELS`) on ``n_samples`` random inputs, per sweep mode."""
    from bench.v2_models import MODELS, sample
    out = {}
    for name in names:
        model = MODELS[name]()
        inputs = [sample(model, np.random.default_rng(seed + i)) for i in range(n_samples)]
        entry = {"neurons": int(model.n_neurons), "weights": int(model.n_weights),
                 "input": [int(x) for x in model.input.shape],
                 "timesteps": int(model.input.timesteps), "dt_us": int(model.input.dt_us),
                 "inputs": f"{n_samples} random samples (bench.v2_models.sample, seeds "
                           f"{seed}..{seed + n_samples - 1})", "sweeps": {}}
        for sweep in sweeps:
            t = time.time()
            r = entry["sweeps"][sweep] = measure(model, inputs, sweep)
            r["seconds"] = round(time.time() - t, 1)
            log(f"{name:13s} {sweep:6s}: {r['latency_us_mean']:10.1f} µs mean "
                f"({r['latency_cycles_min']}..{r['latency_cycles_max']} cycles), "
                f"{r['samples_per_s']:9.0f} samples/s, real-time factor "
                f"{r['real_time_factor']:8.1f} ({r['seconds']} s)")
        out[name] = entry
    return out


def digits_latency(sweeps=SWEEPS, limit=None, log=print):
    """:func:`measure` of ``models/digits`` on its test split (the first ``limit``
    samples; all by default), per sweep mode, against :data:`DIGITS_BASELINE_US`."""
    from bench.e2e import load_data
    from sim.model import load_model
    d = ROOT / "models" / "digits"
    model = load_model(d)
    data, _ = load_data(d, model, limit)
    inputs = [data.binned(i) for i in range(len(data))]
    out = {"model": "models/digits", "baseline_us": DIGITS_BASELINE_US,
           "tolerance": DIGITS_TOLERANCE, "sweeps": {}}
    for sweep in sweeps:
        t = time.time()
        r = measure(model, inputs, sweep)
        r["seconds"] = round(time.time() - t, 1)
        del r["latency_cycles"]                 # 360 numbers; e2e.json has them per sample
        r["ratio_to_baseline"] = r["latency_us_mean"] / DIGITS_BASELINE_US
        r["within_5pct"] = r["ratio_to_baseline"] <= 1 + DIGITS_TOLERANCE
        out["sweeps"][sweep] = r
        log(f"digits        {sweep:6s}: {r['latency_us_mean']:10.2f} µs mean over "
            f"{r['samples']} test samples (baseline {DIGITS_BASELINE_US} µs, "
            f"x{r['ratio_to_baseline']:.3f}) -> {'PASS' if r['within_5pct'] else 'FAIL'}")
    return out


def _command(argv):
    """The command line as run, without ``--out`` and its value (a local path)."""
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            keep.append(a)
    return " ".join(["python -m bench.v2_latency", *keep])


def main(argv=None):
    from bench.v2_models import MODELS
    ap = ArgumentParser(prog="python -m bench.v2_latency",
                        description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=[*MODELS, "digits"], default=None,
                    help="what to measure: version-2 targets and/or digits (default all)")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                    help=f"random inputs per version-2 target (default {DEFAULT_SAMPLES})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first random input")
    ap.add_argument("--sweep-mode", choices=["sparse", "dense", "both"], default="both")
    ap.add_argument("--digits-limit", type=int, default=None,
                    help="only the first N digits test samples (default all)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "v2_latency.json"))
    args = ap.parse_args(argv)
    if args.samples < 1:
        raise CliError(f"--samples: {args.samples} must be at least 1")
    if args.digits_limit is not None and args.digits_limit < 1:
        raise CliError(f"--digits-limit: {args.digits_limit} must be at least 1")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    try:
        doc = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError as e:
        raise CliError(f"{out}: not a JSON file ({e.msg})") from None
    from bench.report import machine
    sweeps = SWEEPS if args.sweep_mode == "both" else (args.sweep_mode,)
    only = args.only or [*MODELS, "digits"]
    names = [n for n in MODELS if n in only]
    doc.setdefault("models", {}).update(v2_latency(names, args.samples, sweeps, args.seed))
    if "digits" in only:
        doc["digits"] = digits_latency(sweeps, args.digits_limit)
    doc.update(clock_hz=CLOCK_HZ, method="sim.cycles.predict (equal to the RTL cycle for "
               "cycle), input words back to back from cycle 0, default lanes, FIFO depth 16",
               date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               machine=machine(),
               command=_command(sys.argv[1:] if argv is None else argv))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.chmod(tmp, 0o644)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench.v2_latency")
