"""Import a NIR *graph* (branches, joins, recurrence, delays) as a version-2 model.

:func:`quant.importers.nir.import_nir` hands a graph here when it is not a plain chain
of the version-1 node types, holds a node type only graphs have (``Delay``, ``Scale``,
``CubaLIF``, ``CubaLI``, ``LI``, a nested graph), was written by
:mod:`quant.nir_export` from a version-2 model, or is read with ``if_flavor="sinabs"``.

Neurons and synapses
--------------------
Every neuron node (``LIF``, ``IF``, ``CubaLIF``, ``LI``, ``CubaLI``) is one layer. Every
path of other nodes from a source (the ``Input`` or a neuron node) into it is one
synapse of that layer: several edges into one neuron node are a *join* (their inputs
add up; a path without a weighted node, e.g. a plain edge from one neuron node to
another, is a residual ``identity`` synapse with weight 1), a node read by several
others is a *branch*. Along one path:

* at most one weighted node: ``Conv2d`` (``conv2d``), ``Affine``/``Linear``
  (``linear``), ``SumPool2d`` (``sumpool2d``), ``AvgPool2d`` (``sumpool2d`` whose
  ``1/D`` scales the layer's accumulator; ``D`` must be a power of two), ``Scale`` with
  one value per channel (``identity``); a scalar ``Scale`` may multiply any of them;
* ``Flatten`` of a whole ``(C, H, W)`` tensor, anywhere;
* ``Delay`` nodes: one delay for every position, a whole number of steps ``dt``; they
  add up to the synapse's ``delay``. A bias behind a delay is refused (the delayed
  bias would be missing in the first steps).

Recurrence: layers are evaluated in a fixed order (the order of ``metadata["index"]``
where the exporter wrote it, else the graph's node order) that puts every source of a
delay-free path before its target where possible. A delay-free path from the layer
itself or from a later layer closes a cycle: NIR's convention (snnTorch's ``RLeaky``,
nirtorch) reads it one step late, so it becomes a synapse with ``delay`` 1 (plus its
``Delay`` nodes' steps are *not* added twice: a path with ``Delay`` nodes has exactly
their delay). Nested graphs (snnTorch exports ``RLeaky``/``RSynaptic`` as one) are
inlined; their ``Input``/``Output`` nodes pass values through.

Neuron nodes
------------
As in :mod:`quant.importers.nir` (``tau`` and ``dt`` to ``beta``, the input gain
``r (1 - beta)``, ``v_leak`` to a bias, ``v_reset`` must be 0, strict compares). In
addition:

``CubaLIF``
    current-based: ``alpha`` from ``tau_syn`` like ``beta`` from ``tau_mem``; the input
    gain is ``w_in (1 - alpha) r (1 - beta)``; the membrane integrates the current of
    the same step (snnTorch's ``Synaptic``); ``v_leak`` must be 0.
``LI`` / ``CubaLI``
    non-spiking: only as the output layer, which then has the ``membrane`` readout.
``IF`` with ``if_flavor="sinabs"``
    sinabs' ``IAF``: fires ``floor(v / threshold)`` spikes (``v >= threshold``, a
    ``spike_limit`` that the state range can never exceed), subtracts them, and bounds
    the membrane at ``-threshold``; the flavour is recorded in ``meta.import``.

Metadata written by :mod:`quant.nir_export` (layer names, evaluation order, exact leak
fractions, widths, ``acc_bits``, resets, ``spike_limit``, ``v_min``, tap groups) is
used, so that an exported model imports as the identical model.

Everything that cannot be represented is refused with one line naming the node and the
reason: per-position delays, dilation, groups, average pools whose divisor is not a
power of two, ``v_reset`` other than 0, two weighted nodes on one path, ...
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import NetImportError, handler_for, register, reject
from .builder import per_channel
from .graph import V_MIN_MINUS_THRESHOLD, GLayer, GSynapse, graph_model

__all__ = ["import_nir_graph", "needs_graph_import", "IF_FLAVORS", "GRAPH_ONLY_TYPES"]

#: Handlers of the nodes on a synapse path: ``fn(node, name, ctx, path)``.
FW_SYNAPSE = "nir.graph.synapse"
#: Handlers of neuron nodes: ``fn(node, name, ctx, shape) -> GLayer`` (synapses added after).
FW_NEURON = "nir.graph.neuron"
IF_FLAVORS = ("nir", "sinabs")
#: Node types that only the graph importer reads.
GRAPH_ONLY_TYPES = ("Delay", "Scale", "CubaLIF", "CubaLI", "LI", "NIRGraph")


class _Ctx:
    """What handlers see: options, notes and ``builder`` (for :func:`reject` messages)."""

    def __init__(self, where, dt, discretization, if_gain, if_flavor, notes):
        self.where = where
        self.noun = "node"
        self.builder = self
        self.dt = dt
        self.discretization = discretization
        self.if_gain = if_gain
        self.if_flavor = if_flavor
        self.notes = notes

    def at(self, name, node):
        return f"{self.where}: node {name} ({type(node).__name__})"


class _Path:
    """The synapse being assembled along one path (source to neuron)."""

    def __init__(self, source, shape):
        self.source = source
        self.shape = tuple(int(s) for s in shape)
        self.src_shape = self.shape
        self.type = None
        self.weight = None
        self.kernel = self.stride = self.padding = None
        self.bias = None
        self.gain = 1.0
        self.delay = 0
        self.has_delay_node = False
        self.nodes = []
        self.op_node = None
        self.meta = {}

    @property
    def origin(self):
        return "node " + (self.nodes[-1] if self.nodes else self.source)


def _meta(node):
    out = {}
    for k, v in (getattr(node, "metadata", None) or {}).items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.ndarray) and v.size == 1:
            v = v.reshape(-1)[0]
        if isinstance(v, np.ndarray) and v.dtype.kind in "SU":
            v = str(v)
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _one(value, what, where):
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise NetImportError(f"{where}: {what} is empty")
    if not np.all(a == a[0]):
        raise NetImportError(f"{where}: {what} differs between neurons "
                             f"({a.min():g}..{a.max():g}); the contract has one leak per layer")
    return float(a[0])


def _int2(v, what, where):
    a = np.asarray(v).reshape(-1)
    if a.size == 0 or not np.all(a == a[0]):
        raise NetImportError(f"{where}: {what} {a.tolist()} is not the same in both axes")
    return int(a[0])


def _snap(x, notes=None, what=""):
    from .nir import _snap as snap
    return snap(x, notes, what)


# -- nodes on a synapse path --------------------------------------------------------------

def _weighted(path, where, what):
    if path.type is not None:
        raise NetImportError(f"{where}: {what} follows the {path.type} node {path.op_node} on "
                             f"the same path without a neuron node in between; the contract "
                             f"has one synaptic operator per synapse")


@register(FW_SYNAPSE, "Input", "Output")
def _pass(node, name, ctx, path):
    """The ends of a nested graph pass their values through."""


@register(FW_SYNAPSE, "Delay")
def _delay(node, name, ctx, path):
    where = ctx.at(name, node)
    d = np.asarray(node.delay, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(d == d[0]):
        raise NetImportError(f"{where}: per-position delays ({d.min():g}..{d.max():g} s) are "
                             f"not representable; a synapse has one delay for all positions")
    if ctx.dt is None:
        raise NetImportError(f"{where}: a Delay node needs the step dt (--dt SECONDS)")
    steps = d[0] / ctx.dt
    if not (math.isfinite(steps) and steps >= 0 and abs(steps - round(steps)) <= 1e-6):
        raise NetImportError(f"{where}: delay {d[0]:g} s is not a whole number of steps "
                             f"dt {ctx.dt:g} s")
    if path.bias is not None:
        raise NetImportError(f"{where}: a delay after the bias of node {path.op_node} is not "
                             f"representable (the bias would be missing in the first steps)")
    path.delay += int(round(steps))
    path.has_delay_node = True


@register(FW_SYNAPSE, "Flatten")
def _flatten(node, name, ctx, path):
    if len(path.shape) == 3:
        out = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        if out is not None and np.asarray(out).size > 1:
            raise NetImportError(f"{ctx.at(name, node)}: flattens to {list(np.asarray(out))}; "
                                 f"only a full flatten of (C, H, W) is supported")
        path.shape = (int(np.prod(path.shape)),)


@register(FW_SYNAPSE, "Conv2d")
def _conv2d(node, name, ctx, path):
    from sim.geometry import conv_out_size
    where = ctx.at(name, node)
    _weighted(path, where, "Conv2d")
    w = np.asarray(node.weight, dtype=np.float64)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise NetImportError(f"{where}: weight shape {tuple(w.shape)} is not a square "
                             f"(C_out, C_in, K, K) kernel")
    if int(node.groups) != 1:
        raise NetImportError(f"{where}: groups={node.groups} is not representable (no groups)")
    if _int2(node.dilation, "dilation", where) != 1:
        raise NetImportError(f"{where}: dilation "
                             f"{np.asarray(node.dilation).reshape(-1).astype(int).tolist()} is "
                             f"not representable")
    if len(path.shape) != 3 or path.shape[0] != w.shape[1]:
        raise NetImportError(f"{where}: expects {w.shape[1]} input channels, gets shape "
                             f"{list(path.shape)}")
    k = w.shape[2]
    s = _int2(node.stride, "stride", where)
    p = node.padding
    if isinstance(p, (str, bytes)):
        p = p.decode() if isinstance(p, bytes) else p
        if p == "valid":
            p = 0
        elif p == "same" and k % 2 == 1 and s == 1:
            p = (k - 1) // 2
        else:
            raise NetImportError(f"{where}: padding {p!r} with kernel {k}, stride {s} is not "
                                 f"supported")
    else:
        p = _int2(p, "padding", where)
    if p >= k:
        raise NetImportError(f"{where}: padding {p} is not smaller than the kernel {k}")
    c, h, wd = path.shape
    path.type, path.weight = "conv2d", w * path.gain
    path.gain = 1.0
    path.kernel, path.stride, path.padding = k, s, p
    path.shape = (w.shape[0], conv_out_size(h, k, s, p), conv_out_size(wd, k, s, p))
    if getattr(node, "bias", None) is not None:
        b = np.broadcast_to(np.asarray(node.bias, dtype=np.float64).reshape(-1),
                            (w.shape[0],)).copy()
        path.bias = b if np.any(b) else None


@register(FW_SYNAPSE, "Affine", "Linear")
def _affine(node, name, ctx, path):
    where = ctx.at(name, node)
    _weighted(path, where, type(node).__name__)
    w = np.asarray(node.weight, dtype=np.float64)
    n_in = int(np.prod(path.shape))
    if w.ndim != 2 or w.shape[1] != n_in:
        raise NetImportError(f"{where}: weight shape {tuple(w.shape)} does not take the "
                             f"{n_in} inputs of shape {list(path.shape)}")
    path.type, path.weight = "linear", w * path.gain
    path.gain = 1.0
    path.shape = (int(w.shape[0]),)
    if getattr(node, "bias", None) is not None:
        b = np.broadcast_to(np.asarray(node.bias, dtype=np.float64).reshape(-1),
                            (w.shape[0],)).copy()
        path.bias = b if np.any(b) else None


@register(FW_SYNAPSE, "SumPool2d", "AvgPool2d")
def _pool(node, name, ctx, path):
    where = ctx.at(name, node)
    _weighted(path, where, type(node).__name__)
    k = _int2(node.kernel_size, "kernel_size", where)
    s = _int2(node.stride, "stride", where)
    p = _int2(node.padding, "padding", where)
    if s != k or p != 0:
        raise NetImportError(f"{where}: kernel {k}, stride {s}, padding {p}: the contract pools "
                             f"with stride == kernel and no padding")
    if len(path.shape) != 3:
        raise NetImportError(f"{where}: pooling needs a (C, H, W) input, gets "
                             f"{list(path.shape)}")
    c, h, w = path.shape
    if h // k < 1 or w // k < 1:
        raise NetImportError(f"{where}: kernel {k} is larger than the input {list(path.shape)}")
    if type(node).__name__ == "AvgPool2d":
        d = k * k
        if d & (d - 1):
            raise NetImportError(f"{where}: an average pool over {k}x{k} divides by {d}, not a "
                                 f"power of two; its scale 1/{d} is not representable (use "
                                 f"SumPool2d and a {d}x threshold)")
        path.gain /= d
    path.type = "sumpool2d"
    path.kernel, path.stride, path.padding = k, k, 0
    path.shape = (c, h // k, w // k)


@register(FW_SYNAPSE, "Scale")
def _scale(node, name, ctx, path):
    where = ctx.at(name, node)
    s = np.asarray(node.scale, dtype=np.float64)
    if s.size == 1:
        v = float(s.reshape(-1)[0])
        if path.type in (None, "sumpool2d"):       # no weights (yet): a gain on the counts
            path.gain *= v
        else:
            path.weight = path.weight * v
            if path.bias is not None:
                path.bias = path.bias * v
        return
    if path.type is not None:
        if path.type == "sumpool2d":
            raise NetImportError(f"{where}: a per-channel Scale after pooling is not "
                                 f"representable (sumpool2d has no weights)")
        sc = per_channel(s, path.shape, "scale", where)
        w = path.weight
        path.weight = w * sc.reshape((-1,) + (1,) * (w.ndim - 1))
        if path.bias is not None:
            path.bias = path.bias * sc
        return
    sc = per_channel(s, path.shape, "scale", where)
    path.type, path.weight = "identity", sc * path.gain
    path.gain = 1.0


reject(FW_SYNAPSE, "a bare Threshold is not supported; use IF/LIF", "Threshold")
reject(FW_SYNAPSE, "1-D convolutions are not supported", "Conv1d")
reject(FW_SYNAPSE, "a non-leaky integrator without threshold is not supported; use LI",
       "I")


# -- neuron nodes ---------------------------------------------------------------------------

def _beta_of(tau, ctx, where, name, what="tau"):
    dt = ctx.dt
    if ctx.dt is None or ctx.discretization is None:
        raise NetImportError(f"{where}: a leaky node needs the step dt and the discretization "
                             f"(--dt SECONDS --discretization euler|exp); neither is guessed")
    if not tau >= 0:
        raise NetImportError(f"{where}: {what} {tau!r} must be >= 0")
    if math.isinf(tau):
        return 1.0
    if ctx.discretization == "euler":
        if tau < dt:
            raise NetImportError(f"{where}: {what} {tau:g} < dt {dt:g}: euler gives "
                                 f"beta = 1 - dt/tau < 0 (use --discretization exp)")
        beta = 1.0 - dt / tau
    else:
        beta = math.exp(-dt / tau) if tau > 0 else 0.0
    return _snap(beta, ctx.notes, f"{name}: {'beta' if what == 'tau' else what}")


def _reset(node, meta, where, ctx, name):
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset, dtype=np.float64) != 0):
        raise NetImportError(f"{where}: a reset to v_reset "
                             f"{float(np.asarray(v_reset).reshape(-1)[0]):g} is not "
                             f"representable; the contract resets to 0 or subtracts the "
                             f"threshold")
    reset = str(meta.get("reset", "zero"))
    if reset not in ("zero", "subtract", "none"):
        raise NetImportError(f"{where}: metadata reset {reset!r} is not zero, subtract or none")
    return reset


def _exact_beta(meta, key="beta"):
    """The leak fraction written by quant.nir_export, or ``None``."""
    num, frac = meta.get(f"{key}_num"), meta.get(f"{key}_frac_bits")
    if num is None or frac is None:
        return None
    return int(num) / (1 << int(frac))


def _layer(node, name, ctx, shape, meta, *, beta, gain, reset, strict=True, bias=None,
           current_beta=None, membrane_only=False, **kw):
    where = ctx.at(name, node)
    thr = np.ones(1) if membrane_only else getattr(node, "v_threshold")
    thr_c = per_channel(thr, shape, "v_threshold", where)
    pc = meta.get("threshold_per_channel")
    if pc is None:
        t = np.asarray(thr).reshape(-1)
        pc = bool(t.size > 1 and not np.all(t == t[0]))
    hints = {k: meta[k] for k in ("state_bits", "acc_bits", "beta_frac_bits", "has_bias")
             if k in meta}
    if "current_beta_frac_bits" in meta:
        hints["current_beta_frac_bits"] = int(meta["current_beta_frac_bits"])
    if "current_state_bits" in meta:
        hints["current_state_bits"] = int(meta["current_state_bits"])
    gl = GLayer(name=name, out_shape=tuple(shape), synapses=[], beta=float(beta),
                threshold=thr_c, reset=reset, strict=strict, bias=bias,
                threshold_per_channel=bool(pc), subtract_is_next_integer=strict,
                current_beta=current_beta, membrane_only=membrane_only,
                origin=f"node {name}", hints=hints, **kw)
    gl.gain = float(gain)
    if "spike_limit" in meta:
        gl.spike_limit = int(meta["spike_limit"])
    if "v_min" in meta and meta["v_min"] is not None and not isinstance(meta["v_min"], str):
        gl.v_min = float(meta["v_min"])
    return gl


def _leak_bias(node, beta, shape, where):
    v_leak = getattr(node, "v_leak", None)
    if v_leak is None:
        return None
    lb = per_channel(v_leak, shape, "v_leak", where) * (1.0 - beta)
    return lb if np.any(lb) else None


@register(FW_NEURON, "LIF", "LI")
def _lif(node, name, ctx, shape):
    where = ctx.at(name, node)
    meta = _meta(node)
    membrane_only = type(node).__name__ == "LI"
    beta = _exact_beta(meta)
    if beta is None:
        beta = _beta_of(_one(node.tau, "tau", where), ctx, where, name)
        gain = _snap(_one(node.r, "r", where) * (1.0 - beta), ctx.notes,
                     f"{name}: input gain r*(1-beta)")
    else:
        gain = 1.0
    if not gain > 0:
        raise NetImportError(f"{where}: input gain r*(1-beta) = {gain:g} must be positive")
    reset = "none" if membrane_only else _reset(node, meta, where, ctx, name)
    return _layer(node, name, ctx, shape, meta, beta=beta, gain=gain, reset=reset,
                  bias=_leak_bias(node, beta, shape, where), membrane_only=membrane_only)


@register(FW_NEURON, "CubaLIF", "CubaLI")
def _cuba(node, name, ctx, shape):
    where = ctx.at(name, node)
    meta = _meta(node)
    membrane_only = type(node).__name__ == "CubaLI"
    if np.any(np.asarray(node.v_leak, dtype=np.float64) != 0):
        raise NetImportError(f"{where}: v_leak != 0 is not representable for a current-based "
                             f"node (the contract's bias enters the current)")
    beta, alpha = _exact_beta(meta), _exact_beta(meta, "current_beta")
    if beta is None or alpha is None:
        beta = _beta_of(_one(node.tau_mem, "tau_mem", where), ctx, where, name)
        alpha = _beta_of(_one(node.tau_syn, "tau_syn", where), ctx, where, name,
                         what="tau_syn")
        r = _one(node.r, "r", where)
        w_in = _one(node.w_in, "w_in", where)
        gain = _snap(r * (1.0 - beta) * w_in * (1.0 - alpha), ctx.notes,
                     f"{name}: input gain r*(1-beta)*w_in*(1-alpha)")
    else:
        gain = 1.0
    if not gain > 0:
        raise NetImportError(f"{where}: input gain r*(1-beta)*w_in*(1-alpha) = {gain:g} must "
                             f"be positive")
    reset = "none" if membrane_only else _reset(node, meta, where, ctx, name)
    return _layer(node, name, ctx, shape, meta, beta=beta, gain=gain, reset=reset,
                  current_beta=alpha, membrane_only=membrane_only)


@register(FW_NEURON, "IF")
def _if(node, name, ctx, shape):
    where = ctx.at(name, node)
    meta = _meta(node)
    r = _one(node.r, "r", where)
    if ctx.if_gain == "r":
        gain = r
    else:
        if ctx.dt is None:
            raise NetImportError(f"{where}: if_gain 'r_dt' needs the step dt (--dt)")
        gain = r * ctx.dt
    gain = _snap(gain, ctx.notes, f"{name}: input gain")
    if ctx.if_flavor == "sinabs" and "layer" not in meta:
        gl = _layer(node, name, ctx, shape, meta, beta=1.0, gain=gain, reset="subtract",
                    strict=False, spike_limit=None, v_min=V_MIN_MINUS_THRESHOLD)
        gl.subtract_is_next_integer = False
        return gl
    reset = _reset(node, meta, where, ctx, name)
    return _layer(node, name, ctx, shape, meta, beta=1.0, gain=gain, reset=reset)


# -- the graph ------------------------------------------------------------------------------

def _inline(graph, prefix=""):
    """``(nodes, edges, order)`` with nested graphs inlined (names ``outer.inner``)."""
    nodes, edges = {}, []
    for k, v in graph.nodes.items():
        name = prefix + k
        if type(v).__name__ == "NIRGraph":
            sub_nodes, sub_edges = _inline(v, name + ".")
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            nodes[name] = v                   # a marker, resolved below
        else:
            nodes[name] = v
    subs = {k: v for k, v in nodes.items() if type(v).__name__ == "NIRGraph"}

    def ends(sub, kind):
        return [f"{sub}.{k}" for k, v in subs[sub].nodes.items() if type(v).__name__ == kind]

    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        srcs = ends(a, "Output") if a in subs else [a]
        dsts = ends(b, "Input") if b in subs else [b]
        edges.extend((x, y) for x in srcs for y in dsts)
    for k in subs:
        del nodes[k]
    return nodes, edges


def needs_graph_import(graph, if_flavor="nir"):
    """Whether :func:`import_nir_graph` must read ``graph`` (see the module docstring)."""
    if if_flavor != "nir":
        return True
    gmeta = _meta(graph)
    if gmeta.get("producer") == "quant.nir_export" and int(gmeta.get("version", 1) or 1) >= 2:
        return True
    if any(type(v).__name__ in GRAPH_ONLY_TYPES for v in graph.nodes.values()):
        return True
    succ, pred = {}, {}
    for a, b in graph.edges:
        succ[a] = succ.get(a, 0) + 1
        pred[b] = pred.get(b, 0) + 1
    return any(n > 1 for n in succ.values()) or any(n > 1 for n in pred.values())


def _ident(name, used):
    s = re.sub(r"\W", "_", name)
    if not s or not s.isidentifier():
        s = "n_" + s
    base, i = s, 2
    while s in used:
        s, i = f"{base}_{i}", i + 1
    used.add(s)
    return s


def import_nir_graph(graph, *, dt, discretization, if_gain="r", if_flavor="nir", timesteps,
                     dt_us, count_clip, integer=None, weight_bits=None, state_bits=None,
                     beta_frac_bits=None, readout=None, where="NIR graph", notes=()):
    """Translate a NIR graph into a validated version-2 :class:`sim.model.Model`.

    The options are those of :func:`quant.importers.nir.import_nir` (already resolved
    against the graph's metadata), plus ``if_flavor`` (:data:`IF_FLAVORS`).
    """
    if if_flavor not in IF_FLAVORS:
        raise NetImportError(f"{where}: if_flavor {if_flavor!r} is not one of "
                             f"{', '.join(IF_FLAVORS)}")
    notes = list(notes)
    ctx = _Ctx(where, dt, discretization, if_gain, if_flavor, notes)
    nodes, edges = _inline(graph)
    kind = {k: type(v).__name__ for k, v in nodes.items()}
    top_in = [k for k in graph.nodes if kind.get(k) == "Input"]
    top_out = [k for k in graph.nodes if kind.get(k) == "Output"]
    if len(top_in) != 1 or len(top_out) != 1:
        raise NetImportError(f"{where}: expected one Input and one Output node, found "
                             f"{len(top_in)} and {len(top_out)}")
    inp, outp = top_in[0], top_out[0]
    pred = {k: [] for k in nodes}
    for a, b in edges:
        for x in (a, b):
            if x not in nodes:
                raise NetImportError(f"{where}: edge ({a}, {b}) names an unknown node {x!r}")
        pred[b].append(a)
    for k, t in kind.items():
        if k in (inp, outp):
            continue
        if handler_for(FW_NEURON, t) is None and handler_for(FW_SYNAPSE, t) is None:
            raise NetImportError(f"{where}: node {k} ({t}): unsupported node type")
    neurons = [k for k in nodes if handler_for(FW_NEURON, kind[k]) is not None]
    if not neurons:
        raise NetImportError(f"{where}: the graph has no neuron node")
    shape_in = np.asarray(nodes[inp].input_type["input"]).astype(int).reshape(-1).tolist()
    if len(shape_in) == 1:
        shape_in = [shape_in[0], 1, 1]
        notes.append(f"flat input of {shape_in[0]} values read as shape {shape_in}")
    if len(shape_in) != 3:
        raise NetImportError(f"{where}: node {inp} (Input): shape {shape_in} is not (P, H, W)")

    # every path of synapse nodes into every neuron node
    def paths_into(n):
        found = []

        def back(x, trail):
            for p in pred[x]:
                if p == inp or p in neurons:
                    found.append((p, list(reversed(trail))))
                elif p == outp:
                    raise NetImportError(f"{where}: node {outp} (Output) feeds node {x}")
                elif p in trail or p == n:
                    raise NetImportError(f"{where}: node {p} ({kind[p]}) is on a cycle without a "
                                         f"neuron node")
                else:
                    back(p, trail + [p])
        back(n, [])
        return found

    paths = {n: paths_into(n) for n in neurons}
    for n in neurons:
        if not paths[n]:
            raise NetImportError(f"{where}: node {n} ({kind[n]}) has no input")
    # the output layer
    out_src = paths_into(outp)
    if len(out_src) != 1 or out_src[0][0] not in neurons or \
            any(handler_for(FW_SYNAPSE, kind[x]) is not _pass for x in out_src[0][1]):
        raise NetImportError(f"{where}: node {outp} (Output) must read exactly one neuron node "
                             f"directly")
    last = out_src[0][0]

    # evaluation order: sources of delay-free paths first; a cycle is cut before the node
    # that comes first; the output layer last
    def has_delay(trail):
        return any(kind[x] == "Delay" for x in trail)

    index = {}
    for i, n in enumerate(neurons):
        m = _meta(nodes[n])
        index[n] = (float(m["index"]) if "index" in m else math.inf, i)
    deps = {n: {s for s, trail in paths[n] if s in neurons and s != n and not has_delay(trail)}
            for n in neurons}
    order, placed = [], set()
    while len(order) < len(neurons):
        rest = [n for n in neurons if n not in placed and (n != last or len(order) ==
                                                           len(neurons) - 1)]
        ready = [n for n in rest if deps[n] <= placed]
        pick = min(ready or rest, key=lambda n: index[n])
        order.append(pick)
        placed.add(pick)
    pos = {n: i for i, n in enumerate(order)}
    for n in neurons:
        if n != last and last in deps[n]:
            raise NetImportError(f"{where}: node {last} feeds the Output and, without a delay, "
                                 f"node {n}; the output layer must be evaluated last")

    # layer names
    used = set()
    lname = {}
    for n in order:
        m = _meta(nodes[n])
        want = str(m["layer"]) if "layer" in m else n
        lname[n] = _ident(want, used)
        if lname[n] != want:
            notes.append(f"node {n}: layer name {lname[n]!r}")

    # assemble the paths (sources before targets, for the shapes)
    shapes = {inp: tuple(shape_in)}
    layers = {}
    for n in order:
        fwd = [(s, t) for s, t in paths[n] if s == inp or (s != n and pos[s] < pos[n])]
        done = []
        for src, trail in fwd:
            done.append(_run_path(src, trail, nodes, kind, ctx, shapes[src]))
        shape = None
        for p in done:
            if p.meta.get("bias_only"):
                continue
            if shape is None:
                shape = p.shape
            elif p.shape != shape:
                raise NetImportError(f"{where}: node {n} ({kind[n]}): its inputs have shapes "
                                     f"{list(shape)} and {list(p.shape)} ({p.origin})")
        if shape is None:
            thr = np.asarray(getattr(nodes[n], "v_threshold", getattr(nodes[n], "tau", 1.0)))
            if thr.ndim == 0 or thr.size == 1:
                raise NetImportError(f"{where}: node {n} ({kind[n]}): only recurrent inputs and "
                                     f"scalar parameters; its shape is unknown")
            shape = tuple(int(s) for s in thr.shape)
        shapes[n] = shape
        layers[n] = (handler_for(FW_NEURON, kind[n])(nodes[n], lname[n], ctx, shape), done)
    for n in order:
        gl, done = layers[n]
        back = [(s, t) for s, t in paths[n] if not (s == inp or (s != n and pos[s] < pos[n]))]
        for src, trail in back:
            p = _run_path(src, trail, nodes, kind, ctx, shapes[src])
            if not p.has_delay_node:
                p.delay += 1
                notes.append(f"{p.origin} -> {n}: a recurrent edge without a Delay node is "
                             f"read one step later (delay 1)")
            elif p.delay < 1:
                raise NetImportError(f"{where}: {p.origin} -> node {n}: a recurrent path with a "
                                     f"delay of 0 steps")
            if p.shape != gl.out_shape and not p.meta.get("bias_only"):
                raise NetImportError(f"{where}: node {n} ({kind[n]}): its recurrent input from "
                                     f"{p.origin} has shape {list(p.shape)}, the layer "
                                     f"{list(gl.out_shape)}")
            done.append(p)
        _finish_layer(gl, done, lname, inp, where)
    glayers = [layers[n][0] for n in order]
    if any(g.membrane_only for g in glayers[:-1]):
        bad = next(n for n in order[:-1] if layers[n][0].membrane_only)
        raise NetImportError(f"{where}: node {bad} ({kind[bad]}) does not spike; a "
                             f"non-spiking node can only be the output layer")
    if glayers[-1].membrane_only:
        if readout not in (None, "membrane"):
            raise NetImportError(f"{where}: node {last} ({kind[last]}) does not spike; the "
                                 f"readout must be membrane, not {readout!r}")
        readout = "membrane"
    meta = {"import": {"source": "nir", "file": str(where), "dt_s": dt,
                       "discretization": discretization, "if_gain": if_gain,
                       "if_flavor": if_flavor, "graph": True}}
    return graph_model(glayers, input_shape=shape_in, timesteps=timesteps, dt_us=dt_us,
                       count_clip=count_clip, readout=readout or "spike_count",
                       integer=integer, weight_bits=weight_bits, state_bits=state_bits,
                       beta_frac_bits=beta_frac_bits, where=where, meta=meta, notes=notes)


def _run_path(src, trail, nodes, kind, ctx, shape):
    p = _Path(src, shape)
    for x in trail:
        had = p.type
        handler_for(FW_SYNAPSE, kind[x])(nodes[x], x, ctx, p)
        p.nodes.append(x)
        if p.type is not None and had is None:
            p.op_node = x
        m = _meta(nodes[x])
        if "synapse" in m or m.get("bias_only"):
            p.meta = m
    if p.type is None:                      # a plain edge: identity, weight 1 per channel
        p.type = "identity"
        p.weight = np.full(int(p.shape[0]), p.gain)
        p.gain = 1.0
    return p


def _finish_layer(gl, done, lname, inp, where):
    """Scale the synapses by the neuron's input gain, merge exported tap groups, add biases."""
    gain = gl.gain
    groups = {}
    bias = None if gl.bias is None else gl.bias.copy()
    for p in done:
        m = p.meta
        if p.bias is not None:
            b = p.bias * gain
            bias = b if bias is None else bias + b
        if m.get("bias_only"):
            continue
        src = "input" if p.source == inp else lname[p.source]
        w = None if p.weight is None else p.weight * gain
        if p.meta.get("kind") == "identity" and p.type in ("conv2d", "linear"):
            w2 = w.reshape(w.shape[0], w.shape[1]) if w.ndim > 2 else w
            diag = np.diag(w2).copy()
            if np.any(w2 - np.diag(diag)):
                raise NetImportError(f"{where}: {p.origin}: metadata says identity, the "
                                     f"weights are not diagonal")
            p.type, w, p.kernel, p.stride, p.padding = "identity", diag, None, None, None
        if "synapse" in m:
            key = int(m["synapse"])
            tap = int(m.get("tap", 0))
            g = groups.setdefault(key, {"taps": int(m.get("taps", 1)), "w": {},
                                        "delay": int(m.get("delay", 0)), "p": p})
            if p.delay != g["delay"] + tap:
                raise NetImportError(f"{where}: {p.origin}: tap {tap} of synapse {key} is "
                                     f"delayed {p.delay} steps, expected {g['delay'] + tap}")
            g["w"][tap] = w
            g["src"] = src
        else:
            groups[("path", len(groups))] = {"taps": 1, "w": {0: w}, "delay": p.delay, "p": p,
                                             "src": src}
    gl.bias = bias

    def order_key(k):
        return (0, k, 0) if isinstance(k, int) else (1, 0, k[1])

    for k in sorted(groups, key=order_key):
        g = groups[k]
        p = g["p"]
        taps = g["taps"]
        if sorted(g["w"]) != list(range(taps)):
            raise NetImportError(f"{where}: synapse {k} of {gl.origin}: taps "
                                 f"{sorted(g['w'])} of {taps} found")
        w = g["w"][0] if taps == 1 else (None if g["w"][0] is None else
                                         np.stack([g["w"][j] for j in range(taps)]))
        hints = {key: p.meta[key] for key in ("weight_bits", "scale") if key in p.meta}
        gl.synapses.append(GSynapse(source=g["src"], type=p.type, weight=w, kernel=p.kernel,
                                    stride=p.stride, padding=p.padding, delay=g["delay"],
                                    taps=taps, gain=p.gain * gain if w is None else 1.0,
                                    origin=p.origin, hints=hints))
