"""Run a model directory on one event sample: ``python -m sim.run``.

::

    python -m sim.run --model models/digits --events sample.npz [--dump out.npz]
                      [--backend auto|numpy|numba] [--repeat N] [--json]

Prints the prediction, the class scores, the spikes of every layer, the overflow
flags and the throughput in input events per second. With ``--dump`` it writes the
contract's reference dump (docs/semantics.md, "The reference dump"):

``spikes_<layer>``
    uint8 ``(T, *out_shape)``, the spike counts (uint16 when ``spike_limit > 255``)
``state_<layer>``
    int64 ``(T, *out_shape)``, the stored ``v`` after each step
``current_<layer>``
    int64 ``(T, *out_shape)``, the stored current ``i`` (current-based layers only)
``scores``
    int64 ``(n_classes,)``
``prediction``
    int64 scalar
``overflow_<layer>``
    bool ``(T,)``

The dump is written next to its target and moved into place when complete. Bad input
(a broken model directory, an unreadable or out-of-range event file, a missing file)
prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .cli import ArgumentParser, CliError, atomic_path, run_main
from .events import bin_events, load_events
from .model import load_model
from .reference import available_backends, run

__all__ = ["main", "write_dump"]

PROG = "python -m sim.run"


def write_dump(result, model, path):
    """Write the reference dump of ``result`` (a recorded run of ``model``) atomically."""
    missing = [layer.name for layer in model.layers if layer.name not in result.spikes]
    if missing:
        raise ValueError("write_dump needs a run with record=True")
    arrays = result.arrays()
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _parser():
    p = ArgumentParser(prog=PROG, description="Run a model directory on one event sample "
                       "with the bit-exact reference.")
    p.add_argument("--model", required=True, help="model directory (or its model.json)")
    p.add_argument("--events", required=True,
                   help="event sample: .npy / .npz structured array with fields x, y, p, t")
    p.add_argument("--dump", metavar="OUT.npz", help="write the reference dump here")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "numba"))
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N times and report the fastest (default 1)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.repeat < 1:
        raise CliError(f"--repeat: {args.repeat} must be at least 1")
    if args.backend != "auto" and args.backend not in available_backends():
        raise CliError(f"--backend: {args.backend!r} is not available here "
                       f"(available: {', '.join(available_backends())})")
    if args.dump is not None and not Path(args.dump).parent.is_dir():
        raise CliError(f"--dump: {args.dump}: the directory {Path(args.dump).parent} "
                       f"does not exist")
    model = load_model(args.model)
    events, label = load_events(args.events)
    inp = model.input
    binned = bin_events(events, inp.shape, inp.timesteps, inp.dt_us, inp.count_clip,
                        where=str(args.events))
    record = args.dump is not None
    backend = args.backend if args.backend != "auto" else available_backends()[-1]
    if backend == "numba":
        # the first call compiles (or loads) the kernel: keep that out of the speed figure
        run(model, binned, record=False, backend=backend)
    best = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = run(model, binned, record=record, backend=args.backend)
        elapsed = time.perf_counter() - t
        best = elapsed if best is None else min(best, elapsed)
    if args.dump is not None:
        write_dump(result, model, args.dump)
    rate = binned.n_events / best if best > 0 else float("inf")
    summary = {
        "model": str(args.model), "events": str(args.events), "label": label,
        "prediction": int(result.prediction),
        "scores": [int(s) for s in result.scores],
        "spikes": {name: int(n) for name, n in result.spike_count.items()},
        "overflow_steps": {name: np.flatnonzero(f).tolist()
                           for name, f in result.overflow.items()},
        "n_events": binned.n_events, "n_dropped": binned.n_dropped,
        "n_clipped": binned.n_clipped, "input_spikes": binned.n_spikes,
        "synops": int(result.total_synops),
        "backend": backend, "seconds": best, "events_per_second": rate,
        "dump": None if args.dump is None else str(args.dump),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    layers = ", ".join(f"{n} {c}" for n, c in summary["spikes"].items())
    ovf = ", ".join(f"{n} at steps {s}" for n, s in summary["overflow_steps"].items() if s)
    print(f"model       {args.model}: {len(model.layers)} layers, {model.n_neurons} neurons, "
          f"{model.n_weights} weights, T={inp.timesteps}, readout {model.readout}")
    print(f"events      {args.events}: {binned.n_events} events, {binned.n_dropped} dropped "
          f"(past T), {binned.n_clipped} clipped, {binned.n_spikes} input spikes"
          + ("" if label is None else f", label {label}"))
    print(f"prediction  {result.prediction}")
    print(f"scores      {' '.join(str(s) for s in summary['scores'])}")
    print(f"spikes      {layers}")
    print(f"overflow    {ovf or 'none'}")
    print(f"speed       {rate:,.0f} events/s ({backend}, {best * 1e3:.3f} ms per run"
          + (f", best of {args.repeat}" if args.repeat > 1 else "") + ")")
    if args.dump is not None:
        print(f"dump        {args.dump}")
    return 0


if __name__ == "__main__":
    run_main(main, prog=PROG)
