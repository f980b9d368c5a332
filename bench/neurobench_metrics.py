"""NeuroBench metrics of the shipped models, float and fixed point side by side.

Run with ``python -m bench.neurobench_metrics [--model DIR ...] [--samples N]``; writes
``bench/results/neurobench.json`` (``--out`` elsewhere) and prints a table.
``python -m bench`` puts the table into ``bench/results/report.md``.

Three columns per model, on the first ``N`` samples of the test split of the model's own
data set (:func:`quant.train.data_from_checkpoint`: generated here, nothing downloaded):

``float`` (the ``neurobench`` package, version 2.3.0)
    The float network of the model directory's ``checkpoint.pt`` (loaded with
    :func:`quant.train.load_checkpoint` / :func:`quant.train.net_from_checkpoint`)
    rebuilt as :class:`NeuroBenchNet`: one ``nn.Conv2d`` / ``nn.Linear`` /
    ``nn.AvgPool2d(divisor_override=1)`` per layer holding the checkpoint's weights and
    one :class:`FloatLIF` activation module per layer, so that NeuroBench's hooks find
    the connections and the spikes. It is wrapped in ``neurobench.models.TorchModel`` and
    run through ``neurobench.benchmarks.Benchmark`` with the static metrics
    ``Footprint``, ``ConnectionSparsity``, ``ParameterCount`` and the workload metrics
    ``ClassificationAccuracy``, ``ActivationSparsity``, ``SynapticOperations``. Before
    that, :func:`check_spikes` runs the same batches through quant's own
    :class:`quant.lif.SpikingNet` and requires every spike of every layer and step and
    every score to be equal, so the metrics describe the checkpoint's network.
``fixed`` (the project's own counters)
    The exported fixed-point model (:func:`sim.model.load_model`) run by the bit-exact
    reference :func:`sim.reference.run`: synaptic operations are the reference's
    ``synops`` (one weight addition per input spike and reached output neuron, zero
    weights included, sum pooling included), activation sparsity is
    ``1 - spikes / (T x neurons)`` from its ``spike_count``, footprint is the stored
    weights at ``weight_bits`` plus thresholds and biases at ``state_bits`` (the
    membrane states, ``neurons x state_bits``, are listed beside it), dense operations
    are ``T x`` the connections of every layer (:func:`dense_connections`).
``fixed_neurobench`` (NeuroBench's functions on the fixed-point model)
    The cross-check where both measure the same thing: ``Footprint`` and
    ``ConnectionSparsity`` of a module holding the integer weights (as ``int8`` /
    ``int16`` / ``int32`` tensors, thresholds and biases likewise), and NeuroBench's
    ``single_layer_MACs`` on the reference's recorded spikes of every conv and linear
    layer: with the real weights (its effective ACs, which skip zero weights), with every
    weight set to one (which counts each (spike, connection) pair once and must equal the
    reference's ``synops`` of that layer exactly: :func:`fixed_neurobench` raises
    otherwise) and dense (``total=True``).

Beside them, the hardware's figures: latency from the cycle model
(:func:`sim.cycles.predict`, which the RTL matches cycle for cycle, default lanes and
FIFO depth 16, input words back to back) at 100 MHz on the first ``--latency-samples``
samples, and the energy per inference of :mod:`boards.energy` (45 nm estimate) from the
reference's counts.

Why the columns differ: the float network and the fixed-point network are different
networks (weights rounded to ``weight_bits``, a floor leak, a clamped state), so their
spikes, and so activation sparsity and effective ACs, differ; NeuroBench counts only
``Linear``/``Conv`` connections (the sum-pooling layer has none), the reference counts
the pooling additions too (shown separately); NeuroBench's effective ACs skip zero
weights, the hardware adds them; the float footprint is 4 bytes per parameter, the
fixed one ``weight_bits / 8``. All inputs are binary (``count_clip`` 1), so both count
no MACs; a model with ``count_clip > 1`` would have MACs in its first layer under
NeuroBench's rule (non-binary input) and is refused by the pair check.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sim.cli import ArgumentParser, CliError, atomic_path, run_main
from sim.geometry import axis_range

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_HZ = 100e6
SHIPPED = ("digits", "gesture_synth")
DEFAULT_SAMPLES = 128
DEFAULT_LATENCY_SAMPLES = 8
NEUROBENCH_VERSION = "2.3.0"

__all__ = ["FloatLIF", "NeuroBenchNet", "check_spikes", "neurobench_float",
           "dense_connections", "fixed_counts", "fixed_neurobench", "hardware",
           "measure_model", "main"]


# -- the float network as NeuroBench sees it -----------------------------------------------

class FloatLIF(nn.Module):
    """LIF neurons of one layer under the float rule of :class:`quant.lif.SpikingNet`.

    ``forward(current)`` takes the synapse output of one step ``(B, *out_shape)`` and
    returns the spikes; the membrane is kept between calls until :meth:`reset_state`.
    The operations and their order are those of ``SpikingNet.forward`` in float mode
    (``acc = current (+ bias) + v``; spike when ``(acc - thr) / thr >= 0``;
    ``v = acc * beta`` minus the reset), so the spikes are bit-identical in float32;
    :func:`check_spikes` verifies it on every run. ``beta`` and ``threshold`` are
    float32 buffers (scalars or one per channel), so NeuroBench's ``Footprint``
    counts them.
    """

    def __init__(self, beta, threshold, reset, out_shape, bias=None, fire=True):
        super().__init__()
        if reset not in ("subtract", "zero", "none"):
            raise ValueError(f"unknown reset {reset!r}")
        self.reset, self.fire = reset, bool(fire)
        self.out_shape = tuple(out_shape)
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())
        self.register_buffer("threshold",
                             torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.bias = None if bias is None else nn.Parameter(
            torch.as_tensor(bias, dtype=torch.float32).clone())
        self.v = None
        self.u = None

    def _channel(self, t, like):
        if t.ndim == 0:
            return t
        return t.reshape((1, -1) + (1,) * (like.ndim - 2))

    def reset_state(self):
        self.v = None
        self.u = None

    def forward(self, current):
        acc = current
        if self.bias is not None:
            acc = acc + self._channel(self.bias, acc)
        if self.v is not None:
            acc = acc + self.v
        thr = self._channel(self.threshold, acc)
        if self.fire:
            s = ((acc - thr) / thr >= 0).to(acc.dtype)
        else:
            s = torch.zeros_like(acc)
        leaked = acc * self.beta
        if self.reset == "subtract":
            self.v = leaked - s * thr
        elif self.reset == "zero":
            self.v = leaked * (1 - s)
        else:
            self.v = leaked
        self.u = acc
        return s


class NeuroBenchNet(nn.Module):
    """A :class:`quant.lif.SpikingNet` (float mode) as plain torch modules.

    ``synapses[i]`` is the ``nn.Conv2d`` (no bias), ``nn.Linear`` (no bias) or
    ``nn.AvgPool2d(k, k, divisor_override=1)`` of layer ``i`` holding the same
    weights; ``neurons[i]`` its :class:`FloatLIF`. ``forward(x)`` takes NeuroBench's
    layout ``(B, T, P, H, W)`` and returns the class scores ``(B, n_classes)``
    (spike counts, or the last step's membrane for a ``membrane`` readout).
    ``record=True`` also returns the spikes of every layer ``{name: (T, B, *shape)}``.
    """

    def __init__(self, net):
        super().__init__()
        self.names = [layer.name for layer in net.layers]
        self.readout = net.readout
        self.synapses = nn.ModuleList()
        self.neurons = nn.ModuleList()
        n = len(net.layers)
        for i, layer in enumerate(net.layers):
            if layer.type == "conv2d":
                co, ci, k, _ = layer.weight.shape
                syn = nn.Conv2d(ci, co, k, stride=layer.stride, padding=layer.padding,
                                bias=False)
            elif layer.type == "linear":
                no, ni = layer.weight.shape
                syn = nn.Linear(ni, no, bias=False)
            else:
                syn = nn.AvgPool2d(layer.kernel, stride=layer.kernel, divisor_override=1)
            if layer.weight is not None:
                with torch.no_grad():
                    syn.weight.copy_(layer.weight.detach())
            bias = None if layer.bias is None else layer.bias.detach()
            fire = not (net.readout == "membrane" and i == n - 1)
            self.synapses.append(syn)
            self.neurons.append(FloatLIF(layer.beta.detach(), layer.threshold.detach(),
                                         layer.reset, layer.out_shape, bias=bias,
                                         fire=fire))
        self.eval()

    def reset(self):
        for lif in self.neurons:
            lif.reset_state()

    def forward(self, x, record=False):
        self.reset()
        B, T = x.shape[0], x.shape[1]
        x = x.to(torch.float32)
        scores = None
        rec = {name: [] for name in self.names}
        last = len(self.names) - 1
        for k in range(T):
            s = x[:, k]
            for i, (syn, lif) in enumerate(zip(self.synapses, self.neurons)):
                if isinstance(syn, nn.Linear):
                    s = s.reshape(B, -1)
                s = lif(syn(s))
                if record:
                    rec[self.names[i]].append(s.detach())
                if i == last and self.readout == "spike_count":
                    scores = s if scores is None else scores + s
        if self.readout == "membrane":
            scores = self.neurons[last].u
        scores = scores.reshape(B, -1)
        if record:
            return scores, {name: torch.stack(v) for name, v in rec.items()}
        return scores


def load_float(model_dir, limit):
    """The checkpoint's float :class:`quant.lif.SpikingNet` and the first ``limit``
    binned test samples of its data set: ``(net, BinnedSet, checkpoint doc)``."""
    from quant.train import data_from_checkpoint, load_checkpoint, net_from_checkpoint
    ckpt = Path(model_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        raise CliError(f"{model_dir}: no checkpoint.pt (export with --include-checkpoint)")
    doc = load_checkpoint(ckpt)
    net = net_from_checkpoint(doc)
    net.eval()
    data = data_from_checkpoint(doc, "test", limit=limit)
    return net, data, doc


def _batches(data, batch_size):
    """``(x (B, T, P, H, W) float32 tensor, y (B,) int64 tensor)`` in sample order."""
    for x, y in data.batches(batch_size):
        yield (torch.from_numpy(np.ascontiguousarray(x.swapaxes(0, 1))).float(),
               torch.from_numpy(np.asarray(y, dtype=np.int64)))


def check_spikes(net, adapter, data, batch_size=16):
    """Run ``data`` through quant's float ``net`` and through ``adapter``; raise
    ``RuntimeError`` unless every spike of every layer and step and every score is equal.

    Returns the number of spikes compared (``samples x T x neurons``)."""
    compared = 0
    with torch.no_grad():
        for x, _ in _batches(data, batch_size):
            ref_scores, tr = net(x.transpose(0, 1), record=True)
            scores, spikes = adapter(x, record=True)
            for name, s in spikes.items():
                ref = tr["spikes"][name].float()
                if not torch.equal(ref, s.float()):
                    bad = int((ref != s.float()).sum())
                    raise RuntimeError(f"NeuroBenchNet spikes of layer {name} differ from "
                                       f"quant's SpikingNet in {bad} places")
                compared += s.numel()
            if not torch.equal(ref_scores.float(), scores.float()):
                raise RuntimeError("NeuroBenchNet scores differ from quant's SpikingNet")
    return compared


@contextlib.contextmanager
def _captured():
    """Capture stdout/stderr of a NeuroBench run (it prints, and reports a failing metric
    as a printed line with a 0 result)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def neurobench_float(net, data, batch_size=16):
    """NeuroBench's metrics of quant's float ``net`` on ``data`` (see the module
    docstring). Returns a dict; raises ``RuntimeError`` when a metric failed inside
    NeuroBench (which would otherwise report 0)."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import (ActivationSparsity, ClassificationAccuracy,
                                             SynapticOperations)
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset
    adapter = NeuroBenchNet(net)
    compared = check_spikes(net, adapter, data, batch_size)
    xs, ys = zip(*_batches(data, batch_size))
    loader = DataLoader(TensorDataset(torch.cat(xs), torch.cat(ys)), batch_size=batch_size,
                        shuffle=False)
    model = TorchModel(adapter)
    model.add_activation_module(FloatLIF)
    bench = Benchmark(model, loader, [], [lambda scores: scores.argmax(1)],
                      [[Footprint, ConnectionSparsity, ParameterCount],
                       [ClassificationAccuracy, ActivationSparsity, SynapticOperations]])
    t0 = time.perf_counter()
    with torch.no_grad(), _captured() as (out, _):
        res = bench.run(quiet=False)
    failed = [line for line in out.getvalue().splitlines() if line.startswith("Error running")]
    if failed or any(v is None for v in res.values()):
        raise RuntimeError("NeuroBench: " + ("; ".join(failed) or f"a metric gave None: {res}"))
    n_act = len(model.activation_layers())
    n_conn = len(model.connection_layers())
    sop = res["SynapticOperations"]
    return {"samples": len(data), "seconds": round(time.perf_counter() - t0, 1),
            "accuracy": float(res["ClassificationAccuracy"]),
            "parameter_count": int(res["ParameterCount"]),
            "footprint_bytes": int(res["Footprint"]),
            "connection_sparsity": float(res["ConnectionSparsity"]),
            "activation_sparsity": float(res["ActivationSparsity"]),
            "synaptic_operations": {"effective_macs": float(sop["Effective_MACs"]),
                                    "effective_acs": float(sop["Effective_ACs"]),
                                    "dense": float(sop["Dense"])},
            "activation_modules": n_act, "connection_modules": n_conn,
            "spikes_checked_against_quant": compared}


# -- the fixed-point model: the project's own counters ------------------------------------

def _axis_pairs(n_in, n_out, kernel, stride, padding):
    lo, hi = axis_range(n_in, n_out, kernel, stride, padding)
    return int(np.maximum(hi - lo + 1, 0).sum())


def dense_connections(layer):
    """Connections of one layer: (input neuron, output neuron) pairs that a spike can
    use, borders excluded (what one step with every input active costs).

    conv: ``C_in x C_out x`` the in-bounds (input, output) pairs of each axis; linear:
    ``N_in x N_out``; sum pooling: the inputs inside the pooled area (one output each).
    """
    if layer.type == "linear":
        return layer.n_in * layer.n_out
    C, H, W = layer.in_shape
    Co, Ho, Wo = layer.out_shape
    if layer.type == "sumpool2d":
        return C * min(H, Ho * layer.kernel) * min(W, Wo * layer.kernel)
    K, S, P = layer.kernel, layer.stride, layer.padding
    return C * Co * _axis_pairs(H, Ho, K, S, P) * _axis_pairs(W, Wo, K, S, P)


def _bits_bytes(n_values, bits):
    return n_values * bits / 8


def _param_values(layer):
    """Stored thresholds and biases of one layer (one per channel, or one threshold for
    the layer when the file gave a single value)."""
    thr = layer.c_out if layer.threshold_per_channel else 1
    return thr, (0 if layer.bias is None else layer.c_out)


def fixed_counts(model, results):
    """The project's own figures of the fixed-point ``model`` from reference runs.

    Parameters
    ----------
    model : sim.model.Model
    results : list of sim.reference.Result
        One per sample (``record`` not needed).

    Returns
    -------
    dict
        ``footprint_bytes`` (weights at ``weight_bits`` + thresholds and biases at
        ``state_bits``) and its parts, ``state_bytes``, ``connection_sparsity`` (zero
        weights / weights), ``activation_sparsity``, ``synaptic_operations``
        (``effective_acs``: mean reference ``synops``; ``effective_macs``: 0, every
        input being binary; ``dense``: ``T x`` :func:`dense_connections`, all layers)
        and the same restricted to conv/linear layers (``*_weighted``), per layer.
    """
    T = model.input.timesteps
    n = len(results)
    wbytes = sum(_bits_bytes(ly.weight_count(), ly.weight_bits or 0) for ly in model.layers)
    pbytes = sum(_bits_bytes(sum(_param_values(ly)), ly.state_bits) for ly in model.layers)
    zeros = sum(int((ly.weights == 0).sum()) for ly in model.layers if ly.weights is not None)
    spikes = sum(sum(int(v) for v in r.spike_count.values()) for r in results) / n
    per_layer = {}
    for ly in model.layers:
        per_layer[ly.name] = {
            "type": ly.type, "neurons": ly.n_out, "weights": ly.weight_count(),
            "effective_acs": sum(int(r.synops[ly.name]) for r in results) / n,
            "dense": T * dense_connections(ly),
            "spikes": sum(int(r.spike_count[ly.name]) for r in results) / n}
    weighted = [v for v in per_layer.values() if v["type"] != "sumpool2d"]
    return {
        "samples": n,
        "accuracy": None,
        "neurons": int(model.n_neurons), "weights": int(model.n_weights),
        "footprint_bytes": wbytes + pbytes, "weight_bytes": wbytes,
        "threshold_bias_bytes": pbytes,
        "state_bytes": sum(_bits_bytes(ly.n_out, ly.state_bits) for ly in model.layers),
        "connection_sparsity": zeros / max(1, model.n_weights),
        "activation_sparsity": 1 - spikes / (T * model.n_neurons),
        "synaptic_operations": {
            "effective_macs": 0.0,
            "effective_acs": sum(v["effective_acs"] for v in per_layer.values()),
            "dense": float(sum(v["dense"] for v in per_layer.values())),
            "effective_acs_weighted": sum(v["effective_acs"] for v in weighted),
            "dense_weighted": float(sum(v["dense"] for v in weighted))},
        "layers": per_layer}


def _int_dtype(bits):
    for b, dt in ((8, torch.int8), (16, torch.int16), (32, torch.int32)):
        if bits <= b:
            return dt
    return torch.int64


def _static_module(model):
    """The fixed-point parameters as a plain module for NeuroBench's static metrics:
    ``nn.Conv2d``/``nn.Linear`` whose weights are the integer weights in the smallest
    torch integer type of ``weight_bits``; thresholds and biases as buffers of the
    smallest type of ``state_bits``."""
    mod = nn.Module()
    mods = nn.ModuleList()
    for ly in model.layers:
        if ly.weights is None:
            continue
        if ly.type == "conv2d":
            m = nn.Conv2d(ly.c_in, ly.c_out, ly.kernel, bias=False)
        else:
            m = nn.Linear(ly.n_in, ly.n_out, bias=False)
        m.weight = nn.Parameter(torch.as_tensor(ly.weights, dtype=_int_dtype(ly.weight_bits)),
                                requires_grad=False)
        mods.append(m)
    mod.layers = mods
    for ly in model.layers:
        n_thr, n_bias = _param_values(ly)
        dt = _int_dtype(ly.state_bits)
        mod.register_buffer(f"{ly.name}_threshold",
                            torch.as_tensor(ly.threshold[:n_thr], dtype=dt))
        if n_bias:
            mod.register_buffer(f"{ly.name}_bias", torch.as_tensor(ly.bias, dtype=dt))
    return mod


def _syn_module(layer, weights):
    if layer.type == "conv2d":
        m = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, stride=layer.stride,
                      padding=layer.padding, bias=False)
    else:
        m = nn.Linear(layer.n_in, layer.n_out, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(np.asarray(weights, dtype=np.float32)))
    return m


def fixed_neurobench(model, binned, results):
    """NeuroBench's own functions on the fixed-point model (see the module docstring).

    Parameters
    ----------
    model : sim.model.Model
    binned : list of sim.events.BinnedEvents
        The samples.
    results : list of sim.reference.Result
        Their reference runs with ``record=True``.

    Returns
    -------
    dict
        ``footprint_bytes``, ``connection_sparsity``, ``synaptic_operations``
        (``effective_acs``, ``dense``, per sample, conv/linear layers) and per layer the
        (spike, connection) pairs NeuroBench counted with all weights one, which equal
        the reference's ``synops``.

    Raises
    ------
    RuntimeError
        A layer's pair count differs from the reference's ``synops``, or an input is not
        binary (``count_clip > 1``), where the two do not count the same thing.
    """
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.models import TorchModel
    static = TorchModel(_static_module(model))
    out = {"footprint_bytes": int(Footprint()(static)),
           "connection_sparsity": float(ConnectionSparsity()(static)), "layers": {}}
    n = len(results)
    eff = dense = 0
    for i, ly in enumerate(model.layers):
        if ly.weights is None:
            continue
        real = _syn_module(ly, ly.weights)
        ones = _syn_module(ly, np.ones(ly.weights.shape))
        pairs = acs = tot = 0
        for b, r in zip(binned, results):
            if i == 0:
                x = np.zeros((b.timesteps, int(np.prod(b.shape))), dtype=np.float32)
                steps = np.repeat(np.arange(b.timesteps), np.diff(b.step_ptr))
                x[steps, b.src] = b.count
                x = x.reshape((b.timesteps,) + tuple(ly.in_shape if ly.type == "conv2d"
                                                      else (ly.n_in,)))
            else:
                x = r.spikes[model.layers[i - 1].name].astype(np.float32)
                x = x.reshape((x.shape[0],) + (tuple(ly.in_shape) if ly.type == "conv2d"
                                               else (ly.n_in,)))
            if x.max(initial=0) > 1:
                raise RuntimeError(f"layer {ly.name}: input counts above 1 (count_clip > 1): "
                                   "NeuroBench counts MACs there, the reference weighted adds")
            xt = torch.from_numpy(np.ascontiguousarray(x))
            with torch.no_grad():
                p, _ = single_layer_MACs(xt, ones)
                a, _ = single_layer_MACs(xt, real)
                d, _ = single_layer_MACs(xt, real, total=True)
            pairs += p
            acs += a
            tot += d
            if p != int(r.synops[ly.name]):
                raise RuntimeError(f"layer {ly.name}: NeuroBench counted {p} (spike, "
                                   f"connection) pairs, the reference {r.synops[ly.name]} "
                                   "synaptic operations")
        out["layers"][ly.name] = {"pairs": pairs / n, "effective_acs": acs / n,
                                  "dense": tot / n}
        eff += acs
        dense += tot
    out["synaptic_operations"] = {"effective_acs": eff / n, "dense": dense / n,
                                  "pairs": sum(v["pairs"] for v in out["layers"].values())}
    out["pairs_equal_reference_synops"] = True
    return out


def hardware(model, binned, results, latency_samples, clock_hz=CLOCK_HZ):
    """Latency (cycle model) on the first ``latency_samples`` samples and energy per
    inference (:mod:`boards.energy`) over all ``results``."""
    from boards.energy import compare
    from sim.cycles import HwParams, lanes_of, predict
    lat = [predict(model, b, HwParams()).latency_cycles(0)
           for b in binned[:latency_samples]]
    c = compare(model, results)
    return {"clock_hz": clock_hz, "lanes": [int(v) for v in lanes_of(model, None)],
            "latency_samples": len(lat), "latency_cycles_mean": float(np.mean(lat)),
            "latency_cycles_max": int(np.max(lat)),
            "latency_us_mean": float(np.mean(lat)) / clock_hz * 1e6,
            "energy_samples": len(results), "energy_nj": c["snn_pj"] / 1e3,
            "dense_mac_network_energy_nj": c["fnn_pj"] / 1e3,
            "energy_model": "boards.energy (Lemaire et al. 2022, 45 nm constants)",
            "latency_model": "sim.cycles.predict, default lanes, fifo_depth 16, input words "
                             "back to back (the RTL matches it cycle for cycle: e2e.json)"}


def _rel(path):
    """``path`` relative to the repository root when it lies inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)


def measure_model(model_dir, samples=DEFAULT_SAMPLES, latency_samples=DEFAULT_LATENCY_SAMPLES,
                  log=print):
    """Every column of one model directory (see the module docstring)."""
    from sim.model import load_model
    from sim.reference import run
    model = load_model(model_dir)
    t0 = time.perf_counter()
    net, data, doc = load_float(model_dir, samples)
    log(f"{_rel(model_dir)}: {len(data)} test samples; float network through NeuroBench ...")
    fl = neurobench_float(net, data)
    log(f"  float: {fl['seconds']} s; fixed point: reference runs ...")
    binned = [data.binned(i) for i in range(len(data))]
    results = [run(model, b, record=True) for b in binned]
    fx = fixed_counts(model, results)
    fx["accuracy"] = float(np.mean([r.prediction == y for r, y in zip(results, data.labels)]))
    nbf = fixed_neurobench(model, binned, results)
    log(f"  hardware: cycle model on {min(latency_samples, len(binned))} samples ...")
    hw = hardware(model, binned, results, latency_samples)
    return {"model": _rel(model_dir), "dataset": doc["dataset"]["name"], "split": "test",
            "samples": len(data), "timesteps": model.input.timesteps,
            "float": fl, "fixed": fx, "fixed_neurobench": nbf, "hardware": hw,
            "seconds": round(time.perf_counter() - t0, 1)}


def table(doc):
    """A plain-text table of a :func:`main` document."""
    rows = [("model", "column", "footprint B", "conn. sp.", "act. sp.",
             "eff. ACs (conv/linear)", "eff. MACs", "dense SOPs (conv/linear)", "accuracy")]
    for name, m in doc["models"].items():
        for col in ("float", "fixed", "fixed_neurobench"):
            c = m[col]
            s = c["synaptic_operations"]
            rows.append((name, col, f"{c['footprint_bytes']:,.0f}",
                         f"{c['connection_sparsity']:.4f}",
                         f"{c['activation_sparsity']:.4f}" if "activation_sparsity" in c else "-",
                         f"{s.get('effective_acs_weighted', s['effective_acs']):,.0f}",
                         f"{s['effective_macs']:,.0f}" if "effective_macs" in s else "-",
                         f"{s.get('dense_weighted', s['dense']):,.0f}",
                         f"{100 * c['accuracy']:.2f} %" if c.get("accuracy") is not None else "-"))
        hw = m["hardware"]
        rows.append((name, "hardware", f"latency {hw['latency_us_mean']:,.1f} us", "",
                     f"energy {hw['energy_nj']:,.1f} nJ", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench.neurobench_metrics",
                        description="NeuroBench metrics of the shipped models "
                                    "(float: neurobench; fixed point: the project's counters)")
    ap.add_argument("--model", action="append", default=None,
                    help="model directory with checkpoint.pt (repeatable; default: "
                         + ", ".join(f"models/{m}" for m in SHIPPED) + ")")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                    help=f"first N test samples per model (default {DEFAULT_SAMPLES})")
    ap.add_argument("--latency-samples", type=int, default=DEFAULT_LATENCY_SAMPLES,
                    help="samples for the cycle-model latency (default "
                         f"{DEFAULT_LATENCY_SAMPLES})")
    ap.add_argument("--out", default=str(RESULTS / "neurobench.json"))
    args = ap.parse_args(argv)
    if args.samples < 1:
        raise CliError(f"--samples: {args.samples} must be at least 1")
    if args.latency_samples < 1:
        raise CliError(f"--latency-samples: {args.latency_samples} must be at least 1")
    dirs = args.model or [str(ROOT / "models" / m) for m in SHIPPED]
    for d in dirs:
        if not Path(d, "model.json").is_file():
            raise CliError(f"{d}: not a model directory (no model.json)")
    import json

    import neurobench
    import torch

    from bench.report import machine
    torch.set_num_threads(1)
    models = {}
    for d in dirs:
        models[Path(d).name] = measure_model(d, args.samples, args.latency_samples)
    doc = {"benchmark": "neurobench",
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "machine": machine(),
           "command": " ".join(["python -m bench.neurobench_metrics"]
                               + list(sys.argv[1:] if argv is None else argv)),
           "neurobench_version": neurobench.__version__, "torch_version": torch.__version__,
           "samples": args.samples, "latency_samples": args.latency_samples,
           "models": models}
    print(table(doc))
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench.neurobench_metrics")
