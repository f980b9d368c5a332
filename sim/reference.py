"""The bit-exact reference: run a model directory on one sample.

This is the model every other part of the project is checked against. It follows the
contract step by step (docs/semantics.md, versions 1 and 2), layers in list order at
every step ``k``:

1. ``x = sum over synapses and taps of count * weight + bias``, where tap ``j`` of a
   synapse with delay ``d`` reads its source's spike counts of step ``k - d - j``;
2. ``acc = v + x`` (a current-based layer: ``i' = clamp(i + x)``, ``acc = v + i'``);
3. clamp to the state width (overflow flag), then the lower bound ``v_min``;
4. ``s = min(spike_limit, u // threshold)`` when ``u >= threshold``, else 0;
5. reset (subtract, zero, none) and leak ``(v * num) >> frac_bits``; the current
   leaks with its own ``beta``.

Synaptic work is event-driven: each input spike touches only the output neurons whose
receptive field holds it (each synapse kind's ``accumulate`` in :mod:`sim.kinds`), so
the cost grows with events and spikes, not with ``T x synapses``. The neuron update
touches every neuron once per step, as the hardware's sweep does.

Two interchangeable backends compute the same integers:

- ``"numpy"``: vectorized NumPy, always available;
- ``"numba"``: a compiled event-driven kernel (:mod:`sim.kernels`), many times
  faster (tens of times here; bench/reference_speed.py), used by default when numba
  is installed.

Both are checked against a deliberately plain oracle in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import INPUT, Model

__all__ = ["Result", "run", "available_backends", "synops_per_event", "neuron_update",
           "current_update", "check_binned", "spike_dtype"]


@dataclass
class Result:
    """What one sample does to the network.

    ``spikes``, ``states`` (and ``currents`` for current-based layers) are per layer
    name, shapes ``(T, *out_shape)``, only when the run recorded traces; ``spikes``
    holds spike counts (uint8, or uint16 for a layer whose ``spike_limit`` exceeds
    255). ``overflow`` is per layer ``(T,)`` bool. ``synops`` counts the weight
    additions each layer did (one per input spike, tap and reached output neuron, times
    the spike's count), ``spike_count`` the spikes each layer emitted (counts summed).
    """
    scores: np.ndarray
    prediction: int
    overflow: dict
    synops: dict
    spike_count: dict
    spikes: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    input_spikes: int = 0
    currents: dict = field(default_factory=dict)

    @property
    def total_synops(self):
        return int(sum(self.synops.values()))

    def arrays(self):
        """The contract's dump as a dict of arrays: ``spikes_<layer>``,
        ``state_<layer>``, ``current_<layer>`` (current-based layers), ``overflow_<layer>``,
        ``scores``, ``prediction``. Needs a run with ``record=True``."""
        arrays = {"scores": np.asarray(self.scores, dtype=np.int64),
                  "prediction": np.int64(self.prediction)}
        for name in self.overflow:
            if name not in self.spikes:
                raise ValueError("the dump needs a run with record=True")
            arrays[f"spikes_{name}"] = self.spikes[name]
            arrays[f"state_{name}"] = np.asarray(self.states[name], dtype=np.int64)
            if name in self.currents:
                arrays[f"current_{name}"] = np.asarray(self.currents[name], dtype=np.int64)
            arrays[f"overflow_{name}"] = np.asarray(self.overflow[name], dtype=bool)
        return arrays

    def dump(self, path):
        """Write :meth:`arrays` as ``.npz``."""
        np.savez(path, **self.arrays())


def spike_dtype(layer):
    """dtype of a layer's recorded spike counts: uint8, or uint16 above 255."""
    return np.uint8 if layer.spike_limit <= 255 else np.uint16


def available_backends():
    out = ["numpy"]
    try:
        from . import kernels  # noqa: F401
        out.append("numba")
    except ImportError:
        pass
    return out


# -- the integer rules, written once ------------------------------------------------------

def current_update(layer, i, x):
    """Step 2 of a current-based layer: ``a = i + x``, ``i' = clamp(a)`` to the current's
    width. Returns ``(i', stored current leak_c(i'), overflow)``."""
    cur = layer.current
    a = i + x
    i2 = np.clip(a, cur.state_min, cur.state_max)
    stored = (i2 * cur.beta_num) >> cur.beta_frac_bits
    return i2, stored, bool((i2 != a).any())


def neuron_update(layer, acc, thr, fire=True):
    """Steps 3-5 of the contract on a flat accumulator.

    Parameters
    ----------
    layer : Layer
    acc : ndarray of int64
        ``v + input + bias`` (``v + i'`` for a current-based layer) for every neuron
        (flat ``C, H, W`` order).
    thr : ndarray of int64
        Threshold of every neuron.
    fire : bool
        ``False`` for the output layer of a ``membrane`` readout (never fires).

    Returns
    -------
    u, s, v, overflow : clamped value (after ``v_min``), spike counts (int64), next
        stored state, flag
    """
    u = np.clip(acc, layer.state_min, layer.state_max)
    overflow = bool((u != acc).any())
    if layer.v_min is not None:
        u = np.maximum(u, layer.v_min)
    if fire:
        s = np.where(u >= thr, np.minimum(layer.spike_limit, u // thr), 0)
    else:
        s = np.zeros(u.shape, dtype=np.int64)
    leaked = (u * layer.beta_num) >> layer.beta_frac_bits
    if layer.reset == "subtract":
        v = leaked - s * thr
    elif layer.reset == "zero":
        v = np.where(s > 0, 0, leaked)
    else:
        v = leaked
    return u, s, v, overflow


class _Synapse:
    """One synapse prepared for the NumPy backend: its kind, shapes and int64 taps."""

    def __init__(self, model, i, syn):
        self.syn = syn
        self.kind = syn.kind
        self.source = model.source_of(i, syn)
        self.in_shape = tuple(syn.in_shape)
        self.out_shape = tuple(model.layers[i].out_shape)
        self.taps = [None if syn.weights is None else syn.tap_weights(j).astype(np.int64)
                     for j in range(syn.taps)]

    def accumulate(self, acc, history, k):
        """Add every tap's input of step ``k`` to ``acc``; the synaptic operations done."""
        ops = 0
        steps = history[self.source]
        for j, w in enumerate(self.taps):
            s = k - self.syn.delay - j
            if s < 0:
                break
            src, count = steps[s]
            if len(src):
                ops += self.kind.accumulate(self.syn, w, self.in_shape, self.out_shape, acc,
                                            src, count)
        return ops


def run(model: Model, binned, *, record=True, backend="auto"):
    """Run ``model`` on one binned sample.

    Parameters
    ----------
    model : Model
    binned : BinnedEvents
        From :func:`sim.events.bin_events` with the model's input settings.
    record : bool
        Keep per-step spikes and states (and currents) of every layer (``T x neurons``
        each).
    backend : {"auto", "numpy", "numba"}

    Returns
    -------
    Result
    """
    if backend == "auto":
        backend = "numba" if "numba" in available_backends() else "numpy"
    if backend not in ("numpy", "numba"):
        raise ValueError(f"unknown backend {backend!r}")
    check_binned(model, binned)
    if backend == "numba":
        from .kernels import run_numba
        return run_numba(model, binned, record=record)
    return _run_numpy(model, binned, record)


def check_binned(model, binned):
    """``ValueError`` when ``binned`` does not fit the model's input."""
    if tuple(binned.shape) != tuple(model.input.shape):
        raise ValueError(f"events have shape {binned.shape}, the model input is "
                         f"{model.input.shape}")
    if binned.timesteps != model.input.timesteps:
        raise ValueError(f"events are binned into {binned.timesteps} steps, the model has "
                         f"{model.input.timesteps}")


def _run_numpy(model, binned, record):
    T = model.input.timesteps
    layers = model.layers
    n_layers = len(layers)
    membrane = model.readout == "membrane"
    syns = [[_Synapse(model, i, syn) for syn in layer.synapses]
            for i, layer in enumerate(layers)]
    bias = [None if layer.bias is None else
            np.repeat(layer.bias.astype(np.int64), layer.n_out // layer.c_out)
            for layer in layers]
    v = [np.zeros(layer.n_out, dtype=np.int64) for layer in layers]
    cur = [np.zeros(layer.n_out, dtype=np.int64) for layer in layers]
    thr = [layer.threshold_per_neuron() for layer in layers]
    # every source's (flat indices, counts) of every step so far
    history = {INPUT: [binned.step(k) for k in range(T)]}
    history.update({layer.name: [] for layer in layers})
    overflow = {layer.name: np.zeros(T, dtype=bool) for layer in layers}
    synops = {layer.name: 0 for layer in layers}
    spike_count = {layer.name: 0 for layer in layers}
    spikes, states, currents = {}, {}, {}
    if record:
        for layer in layers:
            spikes[layer.name] = np.zeros((T, *layer.out_shape), dtype=spike_dtype(layer))
            states[layer.name] = np.zeros((T, *layer.out_shape), dtype=np.int64)
            if layer.current is not None:
                currents[layer.name] = np.zeros((T, *layer.out_shape), dtype=np.int64)
    scores = np.zeros(model.n_classes, dtype=np.int64)
    for k in range(T):
        for i, layer in enumerate(layers):
            x = np.zeros(layer.n_out, dtype=np.int64)
            for syn in syns[i]:
                synops[layer.name] += syn.accumulate(x, history, k)
            if bias[i] is not None:
                x += bias[i]
            ovf_c = False
            if layer.current is not None:
                x, cur[i], ovf_c = current_update(layer, cur[i], x)
            fire = not (membrane and i == n_layers - 1)
            u, s, v[i], ovf = neuron_update(layer, v[i] + x, thr[i], fire)
            overflow[layer.name][k] = ovf or ovf_c
            src = np.flatnonzero(s)
            count = s[src]
            history[layer.name].append((src, count))
            spike_count[layer.name] += int(count.sum())
            if record:
                spikes[layer.name][k].reshape(-1)[src] = count
                states[layer.name][k] = v[i].reshape(layer.out_shape)
                if layer.current is not None:
                    currents[layer.name][k] = cur[i].reshape(layer.out_shape)
            if i == n_layers - 1:
                if membrane:
                    if k == T - 1:
                        scores = u.copy()
                else:
                    scores[src] += count
    prediction = int(np.argmax(scores))
    return Result(scores=scores, prediction=prediction, overflow=overflow, synops=synops,
                  spike_count=spike_count, spikes=spikes, states=states,
                  input_spikes=binned.n_spikes, currents=currents)


def synops_per_event(result):
    """Synaptic operations per input spike of a run (a summary for reports)."""
    return result.total_synops / max(1, result.input_spikes)
