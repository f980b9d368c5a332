"""The bit-exact reference: run a model directory on one sample.

This is the model every other part of the project is checked against. It follows the
contract step by step (docs/semantics.md):

1. ``acc = v``; 2. add the weights of this step's input spikes and the bias;
3. clamp to the state width (overflow flag); 4. ``s = u >= threshold``;
5. reset (subtract, zero, none) and leak ``(v * num) >> frac_bits``;
6. the spikes of step k feed the next layer at step k.

Synaptic work is event-driven: each input spike touches only the output neurons whose
receptive field holds it, so the cost grows with events and spikes, not with
``T x synapses``. The neuron update (clamp, compare, reset, leak) touches every neuron
once per step, as the hardware's sweep does.

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

from .model import Model

__all__ = ["Result", "run", "available_backends", "synops_per_event"]


@dataclass
class Result:
    """What one sample does to the network.

    ``spikes``, ``states`` are per layer name, shapes ``(T, *out_shape)``, only when the
    run recorded traces. ``overflow`` is per layer ``(T,)`` bool. ``synops`` counts the
    weight additions each layer did (one per input spike and reached output neuron),
    ``spike_count`` the spikes each layer emitted.
    """
    scores: np.ndarray
    prediction: int
    overflow: dict
    synops: dict
    spike_count: dict
    spikes: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    input_spikes: int = 0

    @property
    def total_synops(self):
        return int(sum(self.synops.values()))

    def dump(self, path):
        """Write the contract's dump (``spikes_<layer>``, ``state_<layer>``, ``scores``,
        ``prediction``, ``overflow_<layer>``) as ``.npz``."""
        arrays = {"scores": self.scores, "prediction": np.int64(self.prediction)}
        for name in self.overflow:
            if name in self.spikes:
                arrays[f"spikes_{name}"] = self.spikes[name]
                arrays[f"state_{name}"] = self.states[name]
            arrays[f"overflow_{name}"] = self.overflow[name]
        np.savez(path, **arrays)


def available_backends():
    out = ["numpy"]
    try:
        from . import kernels  # noqa: F401
        out.append("numba")
    except ImportError:
        pass
    return out


# -- the integer rules, written once ------------------------------------------------------

def neuron_update(layer, acc, thr, fire=True):
    """Steps 3-5 of the contract on a flat accumulator.

    Parameters
    ----------
    layer : Layer
    acc : ndarray of int64
        ``v + input + bias`` for every neuron (flat ``C, H, W`` order).
    thr : ndarray of int64
        Threshold of every neuron.
    fire : bool
        ``False`` for the output layer of a ``membrane`` readout (never fires).

    Returns
    -------
    u, s, v, overflow : clamped value, spikes (bool), next stored state, flag
    """
    u = np.clip(acc, layer.state_min, layer.state_max)
    overflow = bool((u != acc).any())
    s = (u >= thr) if fire else np.zeros(u.shape, dtype=bool)
    leaked = (u * layer.beta_num) >> layer.beta_frac_bits
    if layer.reset == "subtract":
        v = leaked - np.where(s, thr, 0)
    elif layer.reset == "zero":
        v = np.where(s, 0, leaked)
    else:
        v = leaked
    return u, s, v, overflow


class _NumpyLayer:
    """Event-driven synaptic accumulation for one layer with NumPy."""

    def __init__(self, layer):
        self.layer = layer
        if layer.weights is not None:
            self.w = layer.weights.astype(np.int64)
        if layer.bias is not None:
            self.bias = np.repeat(layer.bias.astype(np.int64), layer.n_out // layer.c_out)
        else:
            self.bias = None

    def accumulate(self, acc, src, count):
        """Add the weights of input spikes ``src`` (flat input index) x ``count`` to ``acc``.

        Returns the number of synaptic operations (weight additions) done.
        """
        layer = self.layer
        if len(src) == 0:
            return 0
        if layer.type == "linear":
            acc += self.w[:, src] @ count
            return int(count.sum()) * layer.n_out
        C, H, W = layer.in_shape
        c, y, x = src // (H * W), (src // W) % H, src % W
        Co, Ho, Wo = layer.out_shape
        acc3 = acc.reshape(Co, Ho, Wo)
        if layer.type == "sumpool2d":
            k = layer.kernel
            oy, ox = y // k, x // k
            ok = (oy < Ho) & (ox < Wo)
            np.add.at(acc3, (c[ok], oy[ok], ox[ok]), count[ok])
            return int(count[ok].sum())
        K, S, P = layer.kernel, layer.stride, layer.padding
        ops = 0
        for ky in range(K):
            ny = y + P - ky
            oky = (ny % S == 0) & (ny >= 0) & (ny // S < Ho)
            if not oky.any():
                continue
            for kx in range(K):
                nx = x + P - kx
                ok = oky & (nx % S == 0) & (nx >= 0) & (nx // S < Wo)
                if not ok.any():
                    continue
                oy, ox, cc, cnt = ny[ok] // S, nx[ok] // S, c[ok], count[ok]
                contrib = self.w[:, cc, ky, kx] * cnt           # (C_out, n)
                flat = (np.arange(Co)[:, None] * Ho + oy) * Wo + ox
                np.add.at(acc, flat.ravel(), contrib.ravel())
                ops += int(cnt.sum()) * Co
        return ops


def _make_layers(model, backend):
    if backend == "numba":
        from .kernels import NumbaLayer
        return [NumbaLayer(layer) for layer in model.layers]
    return [_NumpyLayer(layer) for layer in model.layers]


def run(model: Model, binned, *, record=True, backend="auto"):
    """Run ``model`` on one binned sample.

    Parameters
    ----------
    model : Model
    binned : BinnedEvents
        From :func:`sim.events.bin_events` with the model's input settings.
    record : bool
        Keep per-step spikes and states of every layer (``T x neurons`` each).
    backend : {"auto", "numpy", "numba"}

    Returns
    -------
    Result
    """
    if backend == "auto":
        backend = "numba" if "numba" in available_backends() else "numpy"
    if backend not in ("numpy", "numba"):
        raise ValueError(f"unknown backend {backend!r}")
    if tuple(binned.shape) != tuple(model.input.shape):
        raise ValueError(f"events have shape {binned.shape}, the model input is "
                         f"{model.input.shape}")
    T = model.input.timesteps
    if binned.timesteps != T:
        raise ValueError(f"events are binned into {binned.timesteps} steps, the model has {T}")
    if backend == "numba":
        from .kernels import run_numba
        return run_numba(model, binned, record=record)

    engines = _make_layers(model, backend)
    n_layers = len(model.layers)
    membrane = model.readout == "membrane"
    v = [np.zeros(layer.n_out, dtype=np.int64) for layer in model.layers]
    thr = [layer.threshold_per_neuron() for layer in model.layers]
    overflow = {layer.name: np.zeros(T, dtype=bool) for layer in model.layers}
    synops = {layer.name: 0 for layer in model.layers}
    spike_count = {layer.name: 0 for layer in model.layers}
    spikes, states = {}, {}
    if record:
        for layer in model.layers:
            spikes[layer.name] = np.zeros((T, *layer.out_shape), dtype=np.uint8)
            states[layer.name] = np.zeros((T, *layer.out_shape), dtype=np.int64)
    scores = np.zeros(model.n_classes, dtype=np.int64)
    for k in range(T):
        src, count = binned.step(k)
        for i, (layer, eng) in enumerate(zip(model.layers, engines)):
            acc = v[i].copy()
            synops[layer.name] += eng.accumulate(acc, src, count)
            if eng.bias is not None:
                acc += eng.bias
            fire = not (membrane and i == n_layers - 1)
            u, s, v[i], ovf = neuron_update(layer, acc, thr[i], fire)
            overflow[layer.name][k] = ovf
            src = np.flatnonzero(s)
            count = np.ones(len(src), dtype=np.int64)
            spike_count[layer.name] += len(src)
            if record:
                spikes[layer.name][k].reshape(-1)[src] = 1
                states[layer.name][k] = v[i].reshape(layer.out_shape)
            if i == n_layers - 1:
                if membrane:
                    if k == T - 1:
                        scores = u.copy()
                else:
                    scores[src] += 1
    prediction = int(np.argmax(scores))
    return Result(scores=scores, prediction=prediction, overflow=overflow, synops=synops,
                  spike_count=spike_count, spikes=spikes, states=states,
                  input_spikes=binned.n_spikes)


def synops_per_event(result):
    """Synaptic operations per input spike of a run (a summary for reports)."""
    return result.total_synops / max(1, result.input_spikes)
