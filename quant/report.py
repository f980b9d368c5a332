"""Accuracy and activity report of an exported model (what ``quant.export`` writes).

:func:`evaluate` runs the integer model through the bit-exact reference
(:func:`sim.reference.run`, numba backend when available) on every test sample and,
when given the float net, runs that too. The report holds:

- ``float_accuracy``: the float net (torch, no rounding or clamping);
- ``fixed_accuracy``: the integer model, from the reference;
- ``agreement``: fraction of samples where float and fixed predictions are equal;
- ``torch_integer_agreement``: fraction where the torch integer mode
  (:mod:`quant.lif` for a chain, :mod:`quant.graph` for a graph) predicts the same as the reference (a self-check, 1.0 expected);
- per layer: spike rate (spikes per neuron per step), spikes and synaptic operations
  per sample (weight additions, from the reference's event-driven count), and
  overflow count (samples x steps where clamping changed a state);
- totals: synaptic operations per sample, input spikes per sample.

:func:`markdown` renders the same numbers as a table.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from sim.reference import available_backends, run

__all__ = ["evaluate", "markdown"]


def evaluate(model, data, *, float_net=None, backend="auto", progress=False):
    """Measure ``model`` on a :class:`quant.data.BinnedSet`.

    Returns
    -------
    dict (JSON-serializable)
    """
    from tqdm import tqdm
    from .train import integer_net
    if backend == "auto":
        backend = "numba" if "numba" in available_backends() else "numpy"
    n = len(data)
    labels = np.asarray(data.labels)
    fixed_pred = np.zeros(n, dtype=np.int64)
    names = [layer.name for layer in model.layers]
    spikes = {k: 0 for k in names}
    synops = {k: 0 for k in names}
    overflow = {k: 0 for k in names}
    overflow_samples = 0
    input_spikes = 0
    t0 = time.time()
    for i in tqdm(range(n), desc="reference", disable=not progress, leave=False):
        res = run(model, data.binned(i), record=False, backend=backend)
        fixed_pred[i] = res.prediction
        any_ovf = False
        for k in names:
            spikes[k] += int(res.spike_count[k])
            synops[k] += int(res.synops[k])
            c = int(np.count_nonzero(res.overflow[k]))
            overflow[k] += c
            any_ovf |= c > 0
        overflow_samples += int(any_ovf)
        input_spikes += res.input_spikes
    ref_seconds = time.time() - t0
    T = model.input.timesteps
    report = {
        "samples": n,
        "fixed_accuracy": float((fixed_pred == labels).mean()) if n else None,
        "backend": backend,
        "reference_seconds": round(ref_seconds, 2),
        "input_spikes_per_sample": input_spikes / max(1, n),
        "synops_per_sample": sum(synops.values()) / max(1, n),
        "overflow_count": int(sum(overflow.values())),
        "overflow_samples": overflow_samples,
        "layers": [],
    }
    for layer in model.layers:
        k = layer.name
        report["layers"].append({
            "name": k, "type": "+".join(s.type for s in layer.synapses),
            "neurons": layer.n_out, "weights": layer.weight_count(),
            "weight_bits": max((s.weight_bits for s in layer.synapses
                                if s.weight_bits is not None), default=None),
            "state_bits": layer.state_bits, "acc_bits": layer.acc_bits,
            "spike_rate": spikes[k] / max(1, n * T * layer.n_out),
            "spikes_per_sample": spikes[k] / max(1, n),
            "synops_per_sample": synops[k] / max(1, n),
            "overflow_count": overflow[k],
        })
    with torch.no_grad():
        inet = integer_net(model)
        tpred = _predict(inet, data)
    report["torch_integer_agreement"] = float((tpred == fixed_pred).mean()) if n else None
    if float_net is not None:
        with torch.no_grad():
            fpred = _predict(float_net, data)
        report["float_accuracy"] = float((fpred == labels).mean()) if n else None
        report["agreement"] = float((fpred == fixed_pred).mean()) if n else None
        report["float_predictions"] = fpred.tolist()
    report["fixed_predictions"] = fixed_pred.tolist()
    report["labels"] = labels.tolist()
    return report


def _predict(net, data, batch_size=32):
    out = []
    for x, _ in data.batches(batch_size):
        out.append(torch.argmax(net(torch.from_numpy(x)), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def markdown(report, title="Model report"):
    """The report as Markdown text (summary lines and a per-layer table)."""
    lines = [f"# {title}", ""]
    if report.get("command"):
        lines += ["Made by:", "", "```", report["command"], "```", ""]
    if report.get("dataset"):
        lines += [f"Data set: {report['dataset']}", ""]
    lines += [
        "| measure | value |", "|---|---|",
        f"| test samples | {report['samples']} |",
        f"| float accuracy | {_pct(report.get('float_accuracy'))} |",
        f"| fixed-point accuracy (sim.reference, {report['backend']}) | "
        f"{_pct(report['fixed_accuracy'])} |",
        f"| float/fixed prediction agreement | {_pct(report.get('agreement'))} |",
        f"| torch integer mode vs reference agreement | "
        f"{_pct(report.get('torch_integer_agreement'))} |",
        f"| input spikes per sample | {report['input_spikes_per_sample']:.1f} |",
        f"| synaptic operations per sample | {report['synops_per_sample']:.0f} |",
        f"| overflow count (sample-steps x layers) | {report['overflow_count']} "
        f"({report['overflow_samples']} samples) |",
        "",
        "| layer | type | neurons | weights | bits w/state/acc | spike rate | spikes/sample "
        "| synops/sample | overflows |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for l in report["layers"]:
        lines.append(
            f"| {l['name']} | {l['type']} | {l['neurons']} | {l['weights']} | "
            f"{l['weight_bits'] if l['weight_bits'] is not None else '-'}/{l['state_bits']}/"
            f"{l['acc_bits']} | {l['spike_rate']:.4f} | {l['spikes_per_sample']:.1f} | "
            f"{l['synops_per_sample']:.0f} | {l['overflow_count']} |")
    return "\n".join(lines) + "\n"
