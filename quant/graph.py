"""Spiking graphs (contract version 2) in torch: float, fake-quant and integer-exact.

:class:`GraphNet` runs any version-2 network (docs/semantics.md): layers in list order
at every step ``k``, each with a list of synapses (any kind of :data:`sim.registry.KINDS`
with a ``"quant.torch"`` operator, :mod:`quant.kinds`), delays and taps, recurrence
from the layer itself or later layers (``delay >= 1``), multi-spike neurons
(``spike_limit``), a lower bound ``v_min`` and current-based (CubaLIF) neurons::

    x   = sum over synapses and taps j of op(s_src[k - d - j], w_j) + bias
    i'  = clamp_c(i + x);  acc = v + i'        # current-based layer
    acc = v + x                                # plain layer
    u   = max(clamp(acc), v_min)
    s   = min(spike_limit, u // threshold) if u >= threshold else 0
    v   = leak(u) - s * threshold              # reset "subtract" ("zero", "none")
    i   = leak_c(i')

The three modes are those of :mod:`quant.lif`:

``"float"``
    Real-valued parameters (:class:`FloatGraph`), no rounding or clamping; the spike is
    a Heaviside step with a surrogate derivative (a multi-spike neuron is the sum of
    ``spike_limit`` steps at ``threshold, 2 threshold, ...``). Dropout of a layer's
    outgoing spikes (one mask per sample for all steps, STS-ResNet style) acts only
    here and in fake-quant mode while training.
``"fake_quant"``
    Every forward pass quantizes the float parameters with :func:`graph_layer_params`
    (the one copy of the rules that :func:`quantize_graph` exports) and computes in
    integer units with clamping and the floor leak; rounding passes gradients straight
    through. Integer-exact: equal to :func:`sim.reference.run` on the exported model.
``"integer"``
    A fixed integer :class:`sim.model.Model` (:meth:`GraphNet.from_model`), any
    version-1 or version-2 model, equal to the reference on every spike count, state
    and current of every step.

Exactness: integers are held in ``float32`` when every bound of the contract fits in
24 bits and in ``float64`` otherwise (exact up to 53 bits).

Quantization of a graph (:func:`quantize_graph`)
------------------------------------------------
As for chains (:mod:`quant.ptq`): one scale per layer (or per output channel) turns
the float state into integer units; all synapses into a layer share the layer's scale,
which covers the largest weight over all of them, the threshold (3 bits of headroom) and
the bias. Spike counts are integers whatever the scale of their source, so every layer
is quantized on its own. A layer with a synapse that has no weights (``sumpool2d``)
adds whole counts: its scale is 1. ``v_min`` (one integer per layer) forces one scale
for the layer, as does the output layer of a ``membrane`` readout. The current of a
current-based layer is in the same units as the state; its width is ``current_bits``
(default ``state_bits``), its leak is quantized like ``beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sim.model import (INPUT, Current, InputSpec, Layer, Model, ModelError, READOUTS, RESETS,
                       Synapse, validate_model)
from sim.registry import KINDS

from . import kinds as _kinds  # noqa: F401  (attaches the "quant.torch" parts)
from .ir import NetImportError
from .kinds import torch_op
from .lif import (SURROGATES, _clamp_flag, _FloatOps, _floor_leak, _IntOps, _ste,
                  spike)
from .ptq import layer_scale, quantize_beta

__all__ = ["FloatSynapse", "FloatGraphLayer", "FloatGraph", "GraphNet", "graph_layer_params",
           "quantize_graph", "floatgraph_from_model", "floatgraph_to_dict",
           "floatgraph_from_dict", "MODES"]

MODES = ("float", "fake_quant", "integer")

#: A multi-spike neuron up to this limit trains through one surrogate step per count;
#: above it the count passes its gradient straight through ``u / threshold``.
_MAX_SOFT_SPIKES = 8


# -- the float description ------------------------------------------------------------

@dataclass
class FloatSynapse:
    """One edge into a layer with real-valued weights (the kind's weight shape, with a
    leading ``taps`` axis when ``taps > 1``; ``None`` for a kind without weights)."""
    source: str
    type: str
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    weight: np.ndarray | None = None
    delay: int = 0
    taps: int = 1


@dataclass
class FloatGraphLayer:
    """One population of neurons with real-valued parameters.

    ``beta`` and ``threshold`` as in :class:`quant.ir.FloatLayer`; ``v_min`` is a float
    lower bound of ``u`` (``None``: none); ``current_beta`` makes the layer current-based
    with that leak of the current (``None``: plain). ``dropout`` is the probability of
    dropping an outgoing spike while training (not part of the exported model).
    """
    name: str
    out_shape: tuple
    synapses: list
    bias: np.ndarray | None = None
    beta: float = 1.0
    threshold: float | np.ndarray = 1.0
    reset: str = "subtract"
    spike_limit: int = 1
    v_min: float | None = None
    current_beta: float | None = None
    dropout: float = 0.0


@dataclass
class FloatGraph:
    """A whole float graph plus the input settings of the model it becomes."""
    input_shape: tuple
    layers: list
    timesteps: int
    dt_us: int = 1000
    count_clip: int = 1
    readout: str = "spike_count"
    meta: dict = field(default_factory=dict)


def _np(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def floatgraph_to_dict(g: FloatGraph):
    """A :class:`FloatGraph` as plain types and tensors (``torch.load(weights_only=True)``)."""
    def t(a):
        if a is None:
            return None
        a = np.asarray(a, dtype=np.float64)
        return float(a) if a.ndim == 0 else torch.as_tensor(a)
    return {
        "kind": "graph", "input_shape": list(g.input_shape), "timesteps": g.timesteps,
        "dt_us": g.dt_us, "count_clip": g.count_clip, "readout": g.readout,
        "layers": [{"name": l.name, "out_shape": list(l.out_shape), "bias": t(l.bias),
                    "beta": t(l.beta), "threshold": t(l.threshold), "reset": l.reset,
                    "spike_limit": int(l.spike_limit), "v_min": l.v_min,
                    "current_beta": l.current_beta, "dropout": float(l.dropout),
                    "synapses": [{"source": s.source, "type": s.type, "kernel": s.kernel,
                                  "stride": s.stride, "padding": s.padding,
                                  "weight": t(s.weight), "delay": int(s.delay),
                                  "taps": int(s.taps)} for s in l.synapses]}
                   for l in g.layers]}


def floatgraph_from_dict(d):
    """Inverse of :func:`floatgraph_to_dict` (``KeyError``/``TypeError`` when malformed)."""
    def a(x):
        if isinstance(x, torch.Tensor):
            return x.numpy().astype(np.float64)
        return x
    layers = [FloatGraphLayer(
        name=l["name"], out_shape=tuple(l["out_shape"]), bias=a(l["bias"]), beta=a(l["beta"]),
        threshold=a(l["threshold"]), reset=l["reset"], spike_limit=int(l["spike_limit"]),
        v_min=l["v_min"], current_beta=l["current_beta"], dropout=float(l["dropout"]),
        synapses=[FloatSynapse(source=s["source"], type=s["type"], kernel=s["kernel"],
                               stride=s["stride"], padding=s["padding"], weight=a(s["weight"]),
                               delay=int(s["delay"]), taps=int(s["taps"]))
                  for s in l["synapses"]]) for l in d["layers"]]
    return FloatGraph(input_shape=tuple(d["input_shape"]), layers=layers,
                      timesteps=d["timesteps"], dt_us=d["dt_us"], count_clip=d["count_clip"],
                      readout=d["readout"])


# -- the quantization rules (one copy: export and fake-quant) --------------------------

def _channel_view(w, syn, c_out):
    """``|w|`` of a synapse as ``(C_out, n)`` (taps and fan-in in the second axis)."""
    ax = torch_op(syn.type).channel_axis(syn.taps)
    return np.moveaxis(np.abs(np.asarray(w, dtype=np.float64)), ax, 0).reshape(c_out, -1)


def _channel_shape(syn, ndim):
    """Shape that broadcasts one value per output channel against a weight array."""
    ax = torch_op(syn.type).channel_axis(syn.taps)
    shape = [1] * ndim
    shape[ax] = -1
    return tuple(shape)


def _per_channel(value, c_out, what, name):
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        return np.full(c_out, float(arr[0])), False
    if arr.size != c_out:
        raise NetImportError(f"layer {name}: {what} has {arr.size} values, expected 1 or "
                             f"one per output channel ({c_out})")
    return arr, True


def graph_layer_params(layer: FloatGraphLayer, *, weight_bits=8, state_bits=16,
                       per_channel=False, exact=False, force_layer_scale=False):
    """Integer weights (one array per synapse), bias, thresholds, ``v_min`` and scales of
    one float graph layer (see the module docstring).

    Returns
    -------
    dict with ``weights`` (list of int64 arrays or ``None``), ``bias``, ``threshold``
    (int64 per output channel), ``threshold_per_channel``, ``v_min`` (int or ``None``),
    ``scale`` (float64 per output channel).

    Raises
    ------
    NetImportError
        Naming the layer, when it cannot be represented.
    """
    name = layer.name
    c_out = int(layer.out_shape[0])
    thr, thr_pc = _per_channel(layer.threshold, c_out, "threshold", name)
    if not np.all(np.isfinite(thr)) or (thr <= 0).any():
        raise NetImportError(f"layer {name}: threshold must be positive, got "
                             f"{float(thr.min()):g}")
    state_max = (1 << (state_bits - 1)) - 1
    lim = (1 << (weight_bits - 1)) - 1
    b = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64).reshape(-1)
    if b is not None and b.size != c_out:
        raise NetImportError(f"layer {name}: bias has {b.size} values, expected {c_out}")
    weighted = [s for s in layer.synapses if torch_op(s.type).weighted]
    for j, s in enumerate(layer.synapses):
        op = torch_op(s.type)
        if op.weighted and s.weight is None:
            raise NetImportError(f"layer {name}: synapses[{j}]: a {s.type} synapse needs "
                                 f"weights")
        if not op.weighted and s.weight is not None:
            raise NetImportError(f"layer {name}: synapses[{j}]: a {s.type} synapse has no "
                                 f"weights")
        if s.weight is not None and not np.all(np.isfinite(s.weight)):
            raise NetImportError(f"layer {name}: synapses[{j}]: weights hold NaN or infinity")
    if b is not None and not np.all(np.isfinite(b)):
        raise NetImportError(f"layer {name}: bias holds NaN or infinity")
    one_scale = force_layer_scale or layer.v_min is not None
    if exact or len(weighted) < len(layer.synapses):
        scale = np.ones(c_out)
    else:
        wcat = np.concatenate([_channel_view(s.weight, s, c_out) for s in weighted], axis=1)
        scale = layer_scale(wcat, thr, b, weight_bits=weight_bits, state_bits=state_bits,
                            per_channel=per_channel and not one_scale)
        if not np.all(scale > 0):
            raise NetImportError(f"layer {name}: cannot choose a scale (all-zero weights "
                                 f"and threshold)")

    def _int(arr, what):
        if not np.all(arr == np.rint(arr)):
            bad = arr.flat[np.argmax(arr != np.rint(arr))]
            raise NetImportError(f"layer {name}: {what} value {float(bad)!r} is not an "
                                 f"integer (exact mode)")
        return np.rint(arr).astype(np.int64)

    weights = []
    for j, s in enumerate(layer.synapses):
        if s.weight is None:
            weights.append(None)
            continue
        w = np.asarray(s.weight, dtype=np.float64)
        if exact:
            wq = _int(w, f"synapses[{j}] weight")
            if wq.size and np.abs(wq).max() > lim:
                raise NetImportError(f"layer {name}: synapses[{j}]: weight "
                                     f"{int(np.abs(wq).max())} does not fit {weight_bits} "
                                     f"bits (|w| <= {lim})")
        else:
            wq = np.clip(np.rint(w / scale.reshape(_channel_shape(s, w.ndim))),
                         -lim, lim).astype(np.int64)
        weights.append(wq)
    if exact:
        bq = None if b is None else _int(b, "bias")
        tq = _int(thr, "threshold")
    else:
        bq = None if b is None else np.rint(b / scale).astype(np.int64)
        tq = np.maximum(1, np.rint(thr / scale)).astype(np.int64)
    if bq is not None and bq.size and np.abs(bq).max() > state_max:
        raise NetImportError(f"layer {name}: bias {int(np.abs(bq).max())} does not fit the "
                             f"{state_bits}-bit state")
    if tq.max() > state_max:
        raise NetImportError(f"layer {name}: threshold {int(tq.max())} does not fit the "
                             f"{state_bits}-bit state (max {state_max})")
    v_min = None
    if layer.v_min is not None:
        vm = float(layer.v_min)
        if not math.isfinite(vm) or vm > 0:
            raise NetImportError(f"layer {name}: v_min {vm!r} must be a number <= 0")
        v_min = int(_int(np.array([vm]), "v_min")[0]) if exact else \
            int(np.rint(vm / scale[0]))
        v_min = max(-(1 << (state_bits - 1)), v_min)
    per_ch_out = thr_pc or (per_channel and not one_scale and not exact
                            and len(set(tq.tolist())) > 1)
    return {"weights": weights, "bias": bq, "threshold": tq,
            "threshold_per_channel": bool(per_ch_out), "v_min": v_min, "scale": scale}


def _int_dtype(bits):
    for dt in (np.int8, np.int16, np.int32):
        if bits <= np.iinfo(dt).bits:
            return dt
    return np.int64


def quantize_graph(graph: FloatGraph, *, weight_bits=8, state_bits=16, per_channel=False,
                   beta_frac_bits=None, current_bits=None, exact=False) -> Model:
    """Turn a float graph into a validated integer version-2 :class:`sim.model.Model`.

    Parameters are those of :func:`quant.ptq.quantize`; ``current_bits`` is the width
    of the current of current-based layers (default ``state_bits``). ``acc_bits`` is
    the contract's exact worst case of every layer; ``meta["quantization"]`` records the
    settings and scales.

    Raises
    ------
    NetImportError
        Naming the layer, when the graph cannot be quantized or breaks a rule.
    """
    if not isinstance(graph, FloatGraph):
        raise NetImportError(f"expected a FloatGraph, got {type(graph).__name__}")
    cb = state_bits if current_bits is None else current_bits
    for what, v, lo, hi in (("weight_bits", weight_bits, 2, 16), ("state_bits", state_bits, 2, 32),
                            ("current_bits", cb, 2, 32)):
        if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise NetImportError(f"{what} {v!r} is outside {lo}..{hi}")
    if graph.readout not in READOUTS:
        raise NetImportError(f"readout {graph.readout!r} is not one of {', '.join(READOUTS)}")
    if not graph.layers:
        raise NetImportError("the network has no layers")
    layers, scales = [], {}
    n = len(graph.layers)
    for i, fl in enumerate(graph.layers):
        name = fl.name
        if fl.reset not in RESETS:
            raise NetImportError(f"layer {name}: reset {fl.reset!r} is not one of "
                                 f"{', '.join(RESETS)}")
        for j, s in enumerate(fl.synapses):
            if s.type not in KINDS:
                raise NetImportError(f"layer {name}: synapses[{j}]: unknown synapse kind "
                                     f"{s.type!r}, expected one of {', '.join(KINDS)}")
        q = graph_layer_params(fl, weight_bits=weight_bits, state_bits=state_bits,
                               per_channel=per_channel, exact=exact,
                               force_layer_scale=graph.readout == "membrane" and i == n - 1)
        num, frac = quantize_beta(fl.beta, beta_frac_bits, exact=exact, name=name)
        current = None
        if fl.current_beta is not None:
            cnum, cfrac = quantize_beta(fl.current_beta, beta_frac_bits, exact=exact,
                                        name=f"{name} (current)")
            current = Current(beta_num=cnum, beta_frac_bits=cfrac, state_bits=int(cb))
        syns = []
        for s, wq in zip(fl.synapses, q["weights"]):
            syns.append(Synapse(
                source=s.source, type=s.type, kernel=s.kernel, stride=s.stride,
                padding=s.padding,
                weights=None if wq is None else wq.astype(_int_dtype(weight_bits)),
                weight_bits=None if wq is None else int(weight_bits), delay=int(s.delay),
                taps=int(s.taps), scale=None if wq is None else float(q["scale"].max())))
        layers.append(Layer(
            name=name, out_shape=tuple(int(x) for x in fl.out_shape), synapses=syns,
            bias=None if q["bias"] is None else q["bias"].astype(_int_dtype(state_bits)),
            state_bits=int(state_bits), acc_bits=2, beta_num=num, beta_frac_bits=frac,
            threshold=q["threshold"], threshold_per_channel=q["threshold_per_channel"],
            reset=fl.reset, spike_limit=int(fl.spike_limit), v_min=q["v_min"],
            current=current))
        scales[name] = [float(s) for s in q["scale"]] if (per_channel and not exact) \
            else float(q["scale"][0])
    meta = dict(graph.meta) if graph.meta else {}
    meta["quantization"] = {
        "weight_bits": int(weight_bits), "state_bits": int(state_bits),
        "current_bits": int(cb), "per_channel": bool(per_channel),
        "beta_frac_bits": beta_frac_bits, "exact": bool(exact), "scales": scales}
    try:
        spec = InputSpec(shape=tuple(int(s) for s in graph.input_shape),
                         dt_us=int(graph.dt_us), timesteps=int(graph.timesteps),
                         count_clip=int(graph.count_clip))
        model = Model(input=spec, layers=layers, readout=graph.readout, meta=meta)
        for i, layer in enumerate(layers):
            layer.acc_bits = model.required_acc_bits(i)
        validate_model(model, "quantized graph")
    except (KeyError, ModelError, TypeError, ValueError) as e:
        raise NetImportError(str(e).strip("'\"")) from None
    return model


def floatgraph_from_model(model: Model) -> FloatGraph:
    """The float graph that ``quantize_graph(g, exact=True)`` maps back onto ``model``
    (pass the model's widths; ``current_bits`` is one width for every current)."""
    layers = []
    for i, layer in enumerate(model.layers):
        thr = layer.threshold.astype(np.float64)
        cur = layer.current
        layers.append(FloatGraphLayer(
            name=layer.name, out_shape=tuple(layer.out_shape),
            synapses=[FloatSynapse(
                source=model.source_of(i, s), type=s.type, kernel=s.kernel, stride=s.stride,
                padding=s.padding,
                weight=None if s.weights is None else s.weights.astype(np.float64),
                delay=int(s.delay), taps=int(s.taps)) for s in layer.synapses],
            bias=None if layer.bias is None else layer.bias.astype(np.float64),
            beta=layer.beta_num / (1 << layer.beta_frac_bits),
            threshold=thr if layer.threshold_per_channel else float(thr[0]),
            reset=layer.reset, spike_limit=int(layer.spike_limit),
            v_min=None if layer.v_min is None else float(layer.v_min),
            current_beta=None if cur is None else cur.beta_num / (1 << cur.beta_frac_bits)))
    return FloatGraph(input_shape=tuple(model.input.shape), layers=layers,
                      timesteps=model.input.timesteps, dt_us=model.input.dt_us,
                      count_clip=model.input.count_clip, readout=model.readout,
                      meta=dict(model.meta or {}))


# -- torch ------------------------------------------------------------------------------

def _channel(t, like):
    """A scalar or per-channel tensor broadcast against ``(B, C, ...)``."""
    t = t.to(like.dtype)
    if t.ndim == 0:
        return t
    return t.reshape((1, -1) + (1,) * (like.ndim - 2))


class GraphLayer(nn.Module):
    """One layer of a :class:`GraphNet`: its synapses' float weights (parameters ``w0``,
    ``w1``, ... ``None`` for a kind without weights), bias, and fixed neuron settings."""

    def __init__(self, fl: FloatGraphLayer):
        super().__init__()
        self.name = fl.name
        self.out_shape = tuple(int(s) for s in fl.out_shape)
        if fl.reset not in RESETS:
            raise ValueError(f"layer {fl.name}: unknown reset {fl.reset!r}")
        self.reset, self.spike_limit = fl.reset, int(fl.spike_limit)
        self.v_min = None if fl.v_min is None else float(fl.v_min)
        self.current_beta = None if fl.current_beta is None else float(fl.current_beta)
        self.dropout = float(fl.dropout)
        # geometry only; the weights live in the parameters
        self.synapses = [FloatSynapse(s.source, s.type, s.kernel, s.stride, s.padding, None,
                                      int(s.delay), int(s.taps)) for s in fl.synapses]
        for j, s in enumerate(fl.synapses):
            w = None if s.weight is None else nn.Parameter(
                torch.as_tensor(np.asarray(s.weight), dtype=torch.float32).clone())
            self.register_parameter(f"w{j}", w)
        self.bias = None if fl.bias is None else nn.Parameter(
            torch.as_tensor(np.asarray(fl.bias), dtype=torch.float32).clone())
        self.register_buffer("beta", torch.as_tensor(fl.beta, dtype=torch.float64).clone())
        self.register_buffer("threshold",
                             torch.as_tensor(fl.threshold, dtype=torch.float64).clone())
        self._int = None

    @property
    def c_out(self):
        return self.out_shape[0]

    def weight(self, j):
        return getattr(self, f"w{j}")

    def weights(self):
        """The weight parameters of the synapses that have weights."""
        return [self.weight(j) for j in range(len(self.synapses)) if self.weight(j) is not None]

    def to_float_layer(self):
        def arr(t):
            if t is None:
                return None
            a = t.detach().cpu().numpy().astype(np.float64)
            return float(a) if a.ndim == 0 else a
        return FloatGraphLayer(
            name=self.name, out_shape=self.out_shape,
            synapses=[FloatSynapse(s.source, s.type, s.kernel, s.stride, s.padding,
                                   arr(self.weight(j)), s.delay, s.taps)
                      for j, s in enumerate(self.synapses)],
            bias=arr(self.bias), beta=arr(self.beta), threshold=arr(self.threshold),
            reset=self.reset, spike_limit=self.spike_limit, v_min=self.v_min,
            current_beta=self.current_beta, dropout=self.dropout)


class GraphNet(nn.Module):
    """A version-2 spiking graph run step by step through time (see the module docstring).

    Parameters
    ----------
    graph : FloatGraph
        Topology and initial float parameters.
    surrogate, slope
        As in :class:`quant.lif.SpikingNet`.
    """

    def __init__(self, graph: FloatGraph, surrogate="fast_sigmoid", slope=5.0):
        super().__init__()
        if graph.readout not in READOUTS:
            raise ValueError(f"unknown readout {graph.readout!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}")
        self.layers = nn.ModuleList([GraphLayer(fl) for fl in graph.layers])
        self.input_shape = tuple(int(s) for s in graph.input_shape)
        self.timesteps, self.dt_us = int(graph.timesteps), int(graph.dt_us)
        self.count_clip = int(graph.count_clip)
        self.readout, self.surrogate, self.slope = graph.readout, surrogate, float(slope)
        self.mode = "float"
        self.qconfig = dict(weight_bits=8, state_bits=16, per_channel=False,
                            beta_frac_bits=None, current_bits=None)
        names = [INPUT] + [l.name for l in self.layers]
        if len(set(names)) != len(names):
            raise ValueError("layer names must be unique and not 'input'")
        self._index = {l.name: i for i, l in enumerate(self.layers)}
        for i, layer in enumerate(self.layers):
            for s in layer.synapses:
                if s.source != INPUT and s.source not in self._index:
                    raise ValueError(f"layer {layer.name}: unknown source {s.source!r}")
                if s.source != INPUT and self._index[s.source] >= i and s.delay < 1:
                    raise ValueError(f"layer {layer.name}: a synapse from {s.source} (itself "
                                     f"or a later layer) needs delay >= 1")
                torch_op(s.type)                  # the kind has a torch operator

    # -- conversions ----------------------------------------------------------------
    def to_floatnet(self, meta=None):
        """The float graph (what :func:`quantize_graph` consumes)."""
        return FloatGraph(input_shape=self.input_shape,
                          layers=[l.to_float_layer() for l in self.layers],
                          timesteps=self.timesteps, dt_us=self.dt_us,
                          count_clip=self.count_clip, readout=self.readout,
                          meta=dict(meta or {}))

    @classmethod
    def from_floatnet(cls, graph, **kw):
        return cls(graph, **kw)

    @classmethod
    def from_model(cls, model: Model):
        """An ``"integer"``-mode net that runs a fixed integer model (v1 or v2)."""
        net = cls(floatgraph_from_model(model))
        for i, (gl, layer) in enumerate(zip(net.layers, model.layers)):
            gl._int = _IntParams.from_layer(layer, model.count_clips(i))
        net.requires_grad_(False)
        net.mode = "integer"
        return net

    def set_mode(self, mode, **qconfig):
        """``"float"`` or ``"fake_quant"`` (with ``weight_bits``, ``state_bits``,
        ``per_channel``, ``beta_frac_bits``, ``current_bits``)."""
        if mode not in ("float", "fake_quant"):
            raise ValueError(f"mode {mode!r}: use 'float' or 'fake_quant' "
                             f"('integer' nets come from GraphNet.from_model)")
        if self.mode == "integer":
            raise ValueError("an integer-mode net has fixed parameters")
        unknown = set(qconfig) - set(self.qconfig)
        if unknown:
            raise ValueError(f"unknown quantization setting {sorted(unknown)[0]!r}")
        self.qconfig.update(qconfig)
        self.mode = mode
        return self

    def weighted_layers(self):
        """``(layer, is_output)`` of every layer with weights (for calibration)."""
        n = len(self.layers)
        return [(l, i == n - 1) for i, l in enumerate(self.layers) if l.weights()]

    def source_limit(self, name):
        return self.count_clip if name == INPUT else self.layers[self._index[name]].spike_limit

    # -- parameters per mode --------------------------------------------------------
    def _layer_params(self, i, layer):
        if self.mode == "float":
            return _FloatParams(layer)
        if self.mode == "integer":
            return layer._int
        q = self.qconfig
        membrane_out = self.readout == "membrane" and i == len(self.layers) - 1
        fl = layer.to_float_layer()
        qp = graph_layer_params(fl, weight_bits=q["weight_bits"], state_bits=q["state_bits"],
                                per_channel=q["per_channel"], force_layer_scale=membrane_out)
        num, frac = quantize_beta(fl.beta, q["beta_frac_bits"], name=fl.name)
        cur = None
        if fl.current_beta is not None:
            cnum, cfrac = quantize_beta(fl.current_beta, q["beta_frac_bits"], name=fl.name)
            cb = q["current_bits"] or q["state_bits"]
            cur = (cnum, cfrac, cb)
        m = [self.source_limit(s.source) for s in layer.synapses]
        return _IntParams.from_fake_quant(layer, qp, num, frac, q["state_bits"], cur, m)

    def compute_dtype(self, params=None):
        """``float32`` when integer arithmetic stays exact in it, else ``float64``."""
        if self.mode == "float":
            return torch.float32
        params = params or [self._layer_params(i, l) for i, l in enumerate(self.layers)]
        worst = max(p.width() for p in params)
        if worst > 53:
            raise ValueError(f"integer widths of {worst} bits cannot run exactly in torch")
        return torch.float32 if worst <= 24 else torch.float64

    # -- forward --------------------------------------------------------------------
    def _spikes(self, layer, u, thr, hard):
        m = layer.spike_limit
        if hard:
            # exact integer counts: floor in float64 (exact for the 32-bit state widths)
            q = torch.floor(u.double() / thr.double()).clamp(max=m).to(u.dtype)
            return torch.where(u >= thr, q, torch.zeros_like(u))
        if m == 1:
            return spike((u - thr) / thr, self.surrogate, self.slope)
        if m <= _MAX_SOFT_SPIKES:
            return sum(spike((u - j * thr) / thr, self.surrogate, self.slope)
                       for j in range(1, m + 1))
        q = torch.floor(u.detach().double() / thr.double()).clamp(max=m).to(u.dtype)
        return _ste(u / thr, torch.where(u >= thr, q, torch.zeros_like(u)))

    def _layer_major(self):
        """Every synapse reads the input, an earlier layer or the layer itself: each layer
        can then run all its steps before the next (feed-forward synapses in one batched
        call over ``T x B``), which gives the same integers as the step-major order."""
        return all(s.source == INPUT or self._index[s.source] <= i
                   for i, layer in enumerate(self.layers) for s in layer.synapses)

    def forward(self, x, record=False, order="auto"):
        """Run a batch through all ``T`` steps.

        Parameters
        ----------
        x : Tensor
            Input counts ``(T, B, P, H, W)`` (already clipped to ``count_clip``).
        record : bool
            Also return per-layer traces.
        order : {"auto", "step", "layer"}
            ``"step"``: every layer at step 0, then step 1, ... (any graph); ``"layer"``:
            each layer through all steps, then the next (graphs without synapses from
            later layers; faster); ``"auto"``: ``"layer"`` where it applies. The result
            is the same (integer modes: exactly).

        Returns
        -------
        scores : Tensor ``(B, n_classes)``
        traces : dict, only with ``record``
            ``{"spikes", "states", "currents", "overflow"}``, each per layer name:
            ``(T, B, *out_shape)`` (``currents`` for current-based layers only;
            ``overflow`` ``(T, B)`` bool); states are the stored ``v`` after each step,
            currents the stored ``i``.
        """
        if order not in ("auto", "step", "layer"):
            raise ValueError(f"unknown order {order!r}")
        layer_major = self._layer_major()
        if order == "layer" and not layer_major:
            raise ValueError("order 'layer' needs a graph without synapses from later layers")
        layer_major = layer_major and order != "step"
        T, B = x.shape[0], x.shape[1]
        params = [self._layer_params(i, l) for i, l in enumerate(self.layers)]
        dtype = self.compute_dtype(params)
        x = x.to(dtype)
        n = len(self.layers)
        run = _Run(self, params, dtype, B, record)
        hist = {INPUT: [x[k] for k in range(T)]}
        hist.update({l.name: [] for l in self.layers})
        if layer_major:
            seq = {INPUT: x}
            for i, layer in enumerate(self.layers):
                pre = self._feed_forward(i, layer, run.weights[i], seq, T, B, dtype)
                for k in range(T):
                    acc = None if pre is None else pre[k]
                    acc = self._synaptic(i, layer, run.weights[i], hist, k, acc,
                                         only_self=True)
                    hist[layer.name].append(run.update(i, layer, k, T, acc))
                seq[layer.name] = torch.stack(hist[layer.name])
        else:
            for k in range(T):
                for i, layer in enumerate(self.layers):
                    acc = self._synaptic(i, layer, run.weights[i], hist, k, None)
                    hist[layer.name].append(run.update(i, layer, k, T, acc))
        scores = run.scores
        if scores is None:
            scores = torch.zeros((B,) + self.layers[-1].out_shape, dtype=dtype)
        scores = scores.reshape(B, -1)
        if record:
            traces = {key: {name: torch.stack(vals) for name, vals in d.items() if vals}
                      for key, d in run.rec.items()}
            return scores, traces
        return scores

    @staticmethod
    def _tap(w, syn, tap):
        return None if w is None else (w[tap] if syn.taps > 1 else w)

    def _synaptic(self, i, layer, weights, hist, k, acc, only_self=False):
        """``acc`` plus the synaptic input of step ``k`` (``only_self``: of the layer's
        synapses from itself)."""
        for j, syn in enumerate(layer.synapses):
            if only_self and syn.source != layer.name:
                continue
            op = torch_op(syn.type)
            for tap in range(syn.taps):
                t = k - syn.delay - tap
                if t < 0:
                    break
                y = op.apply(syn, hist[syn.source][t], self._tap(weights[j], syn, tap))
                acc = y if acc is None else acc + y
        return acc

    def _feed_forward(self, i, layer, weights, seq, T, B, dtype):
        """The input of every step ``(T, B, *out_shape)`` from the synapses that do not
        read the layer itself, one operator call per tap over all steps (``None``: none)."""
        pre = None
        for j, syn in enumerate(layer.synapses):
            if syn.source == layer.name:
                continue
            op = torch_op(syn.type)
            src = seq[syn.source]
            for tap in range(syn.taps):
                sh = syn.delay + tap
                if sh >= T:
                    break
                flat = src[:T - sh].reshape(((T - sh) * B,) + tuple(src.shape[2:]))
                y = op.apply(syn, flat, self._tap(weights[j], syn, tap))
                y = y.reshape((T - sh, B) + tuple(y.shape[1:]))
                if sh:
                    y = torch.cat([torch.zeros((sh,) + tuple(y.shape[1:]), dtype=y.dtype), y])
                pre = y if pre is None else pre + y
        return pre


class _Run:
    """The neuron state of one forward pass and the update of one layer at one step."""

    def __init__(self, net, params, dtype, B, record):
        self.net, self.params, self.dtype, self.B, self.record = net, params, dtype, B, record
        n = len(net.layers)
        self.weights = [p.weight_tensors(dtype) for p in params]
        self.biases = [p.bias_tensor(dtype) for p in params]
        self.thrs = [p.threshold_tensor(dtype) for p in params]
        self.v, self.cur, self.masks = [None] * n, [None] * n, [None] * n
        self.drop = net.training and net.mode != "integer"
        self.hard = net.mode == "integer"
        self.rec = {key: {l.name: [] for l in net.layers}
                    for key in ("spikes", "states", "currents", "overflow")}
        self.scores = None

    def update(self, i, layer, k, T, acc):
        """Steps 1-5 of the contract for layer ``i`` at step ``k`` given its synaptic input
        ``acc`` (``None``: nothing arrived); returns the spikes it sends on."""
        net, p = self.net, self.params[i]
        n = len(net.layers)
        membrane = net.readout == "membrane"
        if acc is None:
            acc = torch.zeros((self.B,) + layer.out_shape, dtype=self.dtype)
        if self.biases[i] is not None:
            acc = acc + _channel(self.biases[i], acc)
        ovf_c = None
        if layer.current_beta is not None:
            a = acc if self.cur[i] is None else self.cur[i] + acc
            i2, ovf_c = p.clamp_current(a)
            self.cur[i] = p.leak_current(i2)
            acc = i2
        if self.v[i] is not None:
            acc = acc + self.v[i]
        u, ovf = p.clamp(acc)
        if ovf_c is not None:
            ovf = ovf | ovf_c
        if layer.v_min is not None:
            u = torch.clamp(u, min=p.v_min)
        thr = _channel(self.thrs[i], u)
        if membrane and i == n - 1:
            s = torch.zeros_like(u)
        else:
            s = net._spikes(layer, u, thr, self.hard)
        leaked = p.leak(u)
        sd = s.detach()
        if layer.reset == "subtract":
            self.v[i] = leaked - sd * thr
        elif layer.reset == "zero":
            self.v[i] = leaked * (sd == 0).to(leaked.dtype)
        else:
            self.v[i] = leaked
        out = s
        if self.drop and layer.dropout > 0 and i < n - 1:
            if self.masks[i] is None:
                keep = 1.0 - layer.dropout
                self.masks[i] = torch.bernoulli(torch.full_like(s, keep)) / keep
            out = s * self.masks[i]
        if self.record:
            self.rec["spikes"][layer.name].append(sd)
            self.rec["states"][layer.name].append(self.v[i].detach())
            if self.cur[i] is not None:
                self.rec["currents"][layer.name].append(self.cur[i].detach())
            self.rec["overflow"][layer.name].append(ovf)
        if i == n - 1:
            if membrane:
                if k == T - 1:
                    self.scores = u
            else:
                self.scores = s if self.scores is None else self.scores + s
        return out


class _FloatParams(_FloatOps):
    """Float mode: the layer's own parameters, no rounding or clamping."""

    def __init__(self, layer):
        self.layer = layer
        self.v_min = layer.v_min

    def width(self):
        return 0

    def weight_tensors(self, dtype):
        return [self.layer.weight(j) for j in range(len(self.layer.synapses))]

    def clamp_current(self, a):
        return a, torch.zeros(a.shape[0], dtype=torch.bool)

    def leak_current(self, i):
        return i * self.layer.current_beta


class _IntParams(_IntOps):
    """Integer units: integer weights, bias and thresholds, clamps and floor leaks."""

    def __init__(self, weights, bias, threshold, num, frac, state_bits, v_min, current,
                 bound):
        self.weights, self.bias, self.threshold = weights, bias, threshold
        self.num, self.frac, self.state_bits = int(num), int(frac), int(state_bits)
        self.v_min = v_min
        self.current = current            # (num, frac, bits) or None
        self.bound = bound                # the contract's B (Python int)

    @staticmethod
    def _bound(layer_syns, weights_int, out_shape, bias, state_bits, m_src, current):
        """The contract's ``B`` from integer weights (numpy) of a layer."""
        c_out = out_shape[0]
        b = [0] * c_out
        for s, w, m in zip(layer_syns, weights_int, m_src):
            syn = Synapse(s.source, s.type, s.kernel, s.stride, s.padding, weights=w,
                          delay=s.delay, taps=s.taps)
            fan = KINDS[s.type].fan_in_abs(syn, tuple(out_shape))
            b = [x + int(f) * int(m) for x, f in zip(b, fan)]
        if bias is not None:
            b = [x + abs(int(y)) for x, y in zip(b, np.asarray(bias).tolist())]
        bound = max(b) + (1 << (state_bits - 1))
        if current is not None:
            bound += 1 << (current[2] - 1)
        return bound

    @classmethod
    def from_layer(cls, layer, m_src):
        ws = [None if s.weights is None else torch.as_tensor(s.weights.astype(np.int64))
              for s in layer.synapses]
        b = None if layer.bias is None else torch.as_tensor(layer.bias.astype(np.int64))
        thr = torch.as_tensor(layer.threshold.astype(np.int64))
        cur = None if layer.current is None else (layer.current.beta_num,
                                                  layer.current.beta_frac_bits,
                                                  layer.current.state_bits)
        bound = layer.worst_case_bound(list(m_src))
        return cls(ws, b, thr, layer.beta_num, layer.beta_frac_bits, layer.state_bits,
                   layer.v_min, cur, bound)

    @classmethod
    def from_fake_quant(cls, layer, qp, num, frac, state_bits, current, m_src):
        s = torch.as_tensor(qp["scale"], dtype=torch.float32)
        ws = []
        for j, (syn, wq) in enumerate(zip(layer.synapses, qp["weights"])):
            if wq is None:
                ws.append(None)
                continue
            w = layer.weight(j)
            ws.append(_ste(w / s.reshape(_channel_shape(syn, w.ndim)),
                           torch.as_tensor(wq, dtype=torch.float32)))
        b = None
        if layer.bias is not None:
            b = _ste(layer.bias / s, torch.as_tensor(qp["bias"], dtype=torch.float32))
        thr = torch.as_tensor(qp["threshold"])
        bound = cls._bound(layer.synapses, qp["weights"], layer.out_shape, qp["bias"],
                           state_bits, m_src, current)
        return cls(ws, b, thr, num, frac, state_bits, qp["v_min"], current, bound)

    def width(self):
        w = max(self.bound.bit_length() + 1, self.state_bits + self.frac)
        if self.current is not None:
            w = max(w, self.current[2] + self.current[1])
        return w

    def weight_tensors(self, dtype):
        return [None if w is None else w.to(dtype) for w in self.weights]

    def clamp_current(self, a):
        return _clamp_flag(a, self.current[2])

    def leak_current(self, i):
        return _floor_leak(i, self.current[0], self.current[1])

