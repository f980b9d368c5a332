"""Import a NIR graph (``nir.read`` of a ``.nir`` file) as a contract network.

This module reads a chain ``Input -> ... -> Output`` of the node types that have a
handler (one function each, see :mod:`quant.importers`): ``Conv2d``, ``Affine``,
``Linear``, ``SumPool2d``, ``AvgPool2d``, ``Flatten``, ``LIF``, ``IF``, ``Input``,
``Output``. :func:`model_from_nir` hands every other graph (branches, joins, recurrent
edges, ``Delay``, ``Scale``, ``CubaLIF``, ``LI``, nested graphs, ``if_flavor="sinabs"``,
version-2 exports) to :mod:`quant.importers.nir_graph`, which makes a version-2 model;
:func:`import_nir` (the chain API returning a ``FloatNet``) refuses those with a pointer.

From continuous time to steps
-----------------------------
NIR describes neurons in continuous time. ``LIF``: ``tau dv/dt = (v_leak - v) + r I``,
fire on ``v > v_threshold``, then ``v = v_reset``. The step ``dt`` (seconds) and the
discretization are options, never guessed: a graph with ``LIF`` nodes needs both
(``--dt``, ``--discretization``) unless the graph's metadata (written by
:mod:`quant.nir_export`) records them, in which case those are used and reported.

``euler``
    ``beta = 1 - dt / tau`` (snnTorch's NIR convention; needs ``tau >= dt``);
``exp``
    ``beta = exp(-dt / tau)`` (exact decay over one step).

The input ``I`` is held constant over the step, so one step adds
``gain * I`` with ``gain = r * (1 - beta)`` (``= r dt / tau`` for euler), and the leak
voltage adds ``v_leak * (1 - beta)`` per step, which becomes the layer's bias. The
update is then the contract's ``acc = beta * v_prev + gain * I`` (``gain`` is
multiplied into the weights; after a pooling, which has no weights, the threshold is
divided by it instead).

``IF``: ``dv/dt = r I``, no leak (``beta = 1``). Its input gain is an option:
``if_gain="r"`` (default: one step adds ``r * I``, the per-step convention of tools
that export IF neurons) or ``"r_dt"`` (``r * dt * I``: the current held for ``dt``).

Reset: NIR resets to ``v_reset`` after a spike; ``v_reset = 0`` is the contract's
reset ``zero``, anything else is an error. NIR 1.0 has no reset by subtraction: a node
whose metadata says ``reset: subtract`` or ``none`` (as :mod:`quant.nir_export`
writes for such layers) is imported with that reset, and the import reports it.

Threshold: NIR fires on ``v > v_threshold``. In integer mode (integer weights after
the gain) that is ``v >= floor(v_threshold) + 1``; see
:mod:`quant.importers.builder` for both modes. Parameters may be scalars, one per
channel or one per neuron, but must agree within each channel; ``tau`` and ``r`` must
be the same for the whole layer (the contract has one leak per layer). Derived values
within ``1e-9`` of a fraction ``n / 2**f`` (``f <= 24``) are snapped to it, so a
``tau`` written as ``dt / (1 - beta)`` gives back exactly ``beta``; snapped values
are reported.
"""

from __future__ import annotations

import math

import numpy as np

from . import NetImportError, handler_for, register, reject

__all__ = ["import_nir", "read_graph", "DISCRETIZATIONS"]

FRAMEWORK = "nir"
DISCRETIZATIONS = ("euler", "exp")


class _Ctx:
    def __init__(self, builder, dt, discretization, if_gain, notes):
        self.builder = builder
        self.dt = dt
        self.discretization = discretization
        self.if_gain = if_gain
        self.notes = notes


def _snap(x, notes=None, what=""):
    """``x`` snapped to the nearest ``n / 2**f`` (f <= 24) within 1e-9 relative."""
    if not math.isfinite(x):
        return x
    for f in range(25):
        y = round(x * (1 << f)) / (1 << f)
        if abs(y - x) <= 1e-9 * max(1.0, abs(x)):
            if y != x and notes is not None:
                notes.append(f"{what} {x!r} snapped to {y!r}")
            return y
    return x


def _one(value, what, where):
    """A parameter that must hold one value for the whole layer."""
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


# -- operators ---------------------------------------------------------------------------

@register(FRAMEWORK, "Input", "Output")
def _io(node, name, ctx):
    """Graph ends: nothing to build."""


@register(FRAMEWORK, "Conv2d")
def _conv2d(node, name, ctx):
    where = f"{ctx.builder.where}: node {name} (Conv2d)"
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
    bias = None
    if node.bias is not None:
        b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
        if b.size == 1:
            b = np.full(w.shape[0], b[0])
        bias = None if not np.any(b) else b
    ctx.builder.add_conv(name, w, bias, s, p)


@register(FRAMEWORK, "Affine", "Linear")
def _affine(node, name, ctx):
    where = f"{ctx.builder.where}: node {name} ({type(node).__name__})"
    w = np.asarray(node.weight, dtype=np.float64)
    if w.ndim != 2:
        raise NetImportError(f"{where}: weight shape {tuple(w.shape)} is not (N_out, N_in)")
    bias = None
    if getattr(node, "bias", None) is not None:
        b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
        if b.size == 1:
            b = np.full(w.shape[0], b[0])
        if b.size != w.shape[0]:
            raise NetImportError(f"{where}: bias has {b.size} values, expected {w.shape[0]}")
        bias = None if not np.any(b) else b
    ctx.builder.add_linear(name, w, bias)


@register(FRAMEWORK, "SumPool2d", "AvgPool2d")
def _pool(node, name, ctx):
    where = f"{ctx.builder.where}: node {name} ({type(node).__name__})"
    k = _int2(node.kernel_size, "kernel_size", where)
    s = _int2(node.stride, "stride", where)
    p = _int2(node.padding, "padding", where)
    average = type(node).__name__ == "AvgPool2d"
    if average and (k * k) & (k * k - 1):
        raise NetImportError(f"{where}: an average pool over {k}x{k} divides by {k * k}, not a "
                             f"power of two; its scale 1/{k * k} is not representable (use "
                             f"SumPool2d and a {k * k}x threshold)")
    ctx.builder.add_pool(name, k, s, p, average=average)


@register(FRAMEWORK, "Flatten")
def _flatten(node, name, ctx):
    out = node.output_type.get("output") if isinstance(node.output_type, dict) else None
    if out is not None and np.asarray(out).size > 1 and ctx.builder.spatial:
        raise NetImportError(f"{ctx.builder.where}: node {name} (Flatten): flattens to "
                             f"{list(np.asarray(out))}, only a full flatten of (C, H, W) is "
                             f"supported")
    ctx.builder.add_flatten(name)


reject(FRAMEWORK, "a bare Threshold is not supported; use IF/LIF", "Threshold")
reject(FRAMEWORK, "1-D convolutions are not supported", "Conv1d")


# -- neurons -----------------------------------------------------------------------------

def _reset_of(node, name, ctx, where):
    v_reset = np.asarray(node.v_reset, dtype=np.float64)
    if np.any(v_reset != 0):
        raise NetImportError(f"{where}: v_reset {float(v_reset.reshape(-1)[0]):g} is not 0; "
                             f"the contract resets to 0 or subtracts the threshold")
    meta = getattr(node, "metadata", None) or {}
    reset = meta.get("reset", "zero")
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    if reset not in ("zero", "subtract", "none"):
        raise NetImportError(f"{where}: metadata reset {reset!r} is not zero, subtract or none")
    if reset != "zero":
        ctx.notes.append(f"{name}: reset {reset!r} from the node's metadata (NIR itself "
                         f"resets to v_reset)")
    return reset


@register(FRAMEWORK, "LIF")
def _lif(node, name, ctx):
    where = f"{ctx.builder.where}: node {name} (LIF)"
    if ctx.dt is None or ctx.discretization is None:
        raise NetImportError(f"{where}: an LIF node needs the step dt and the discretization "
                             f"(--dt SECONDS --discretization euler|exp); neither is guessed")
    tau = _one(node.tau, "tau", where)
    r = _one(node.r, "r", where)
    dt = ctx.dt
    if not tau >= 0 or not math.isfinite(tau):
        raise NetImportError(f"{where}: tau {tau!r} must be a finite number >= 0")
    with np.errstate(divide="ignore"):
        if ctx.discretization == "euler":
            if tau < dt:
                raise NetImportError(f"{where}: tau {tau:g} < dt {dt:g}: euler gives "
                                     f"beta = 1 - dt/tau < 0 (use --discretization exp or a "
                                     f"smaller dt)")
            beta = 1.0 - dt / tau
        else:
            beta = math.exp(-dt / tau) if tau > 0 else 0.0
    beta = _snap(beta, ctx.notes, f"{name}: beta")
    gain = _snap(r * (1.0 - beta), ctx.notes, f"{name}: input gain r*(1-beta)")
    if gain <= 0:
        raise NetImportError(f"{where}: input gain r*(1-beta) = {gain:g} must be positive "
                             f"(r {r:g}, beta {beta:g})")
    reset = _reset_of(node, name, ctx, where)
    v_leak = np.asarray(node.v_leak, dtype=np.float64) * (1.0 - beta)
    ctx.builder.add_neuron(name, beta=beta, threshold=np.asarray(node.v_threshold),
                           reset=reset, strict=True, gain=gain,
                           leak_bias=v_leak if np.any(v_leak) else None,
                           threshold_per_channel=_pc_hint(node),
                           subtract_is_next_integer=True)


@register(FRAMEWORK, "IF")
def _if(node, name, ctx):
    where = f"{ctx.builder.where}: node {name} (IF)"
    r = _one(node.r, "r", where)
    if ctx.if_gain == "r":
        gain = r
    else:
        if ctx.dt is None:
            raise NetImportError(f"{where}: if_gain 'r_dt' needs the step dt (--dt)")
        gain = r * ctx.dt
    gain = _snap(gain, ctx.notes, f"{name}: input gain")
    reset = _reset_of(node, name, ctx, where)
    ctx.builder.add_neuron(name, beta=1.0, threshold=np.asarray(node.v_threshold), reset=reset,
                           strict=True, gain=gain, threshold_per_channel=_pc_hint(node),
                           subtract_is_next_integer=True)


def _pc_hint(node):
    meta = getattr(node, "metadata", None) or {}
    if "threshold_per_channel" in meta:
        return bool(meta["threshold_per_channel"])
    thr = np.asarray(node.v_threshold).reshape(-1)
    return bool(thr.size > 1 and not np.all(thr == thr[0]))


# -- driver ------------------------------------------------------------------------------

def read_graph(path):
    """``nir.read`` with errors as :class:`NetImportError` naming the file."""
    import nir
    try:
        return nir.read(str(path), type_check=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse problem is bad input
        raise NetImportError(f"{path}: not a readable NIR file: "
                             f"{' '.join(str(e).split())[:200]}") from None


def _chain(graph, where):
    """The node names from the Input to the Output, in order."""
    nodes = graph.nodes
    kinds = {k: type(v).__name__ for k, v in nodes.items()}
    ins = [k for k, t in kinds.items() if t == "Input"]
    outs = [k for k, t in kinds.items() if t == "Output"]
    if len(ins) != 1 or len(outs) != 1:
        raise NetImportError(f"{where}: expected one Input and one Output node, found "
                             f"{len(ins)} and {len(outs)}")
    succ, pred = {}, {}
    for a, b in graph.edges:
        for x in (a, b):
            if x not in nodes:
                raise NetImportError(f"{where}: edge ({a}, {b}) names an unknown node {x!r}")
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    for k in nodes:
        if len(succ.get(k, [])) > 1:
            raise NetImportError(f"{where}: node {k} ({kinds[k]}) feeds {len(succ[k])} nodes; "
                                 f"only a chain of layers is supported")
        if len(pred.get(k, [])) > 1:
            raise NetImportError(f"{where}: node {k} ({kinds[k]}) has {len(pred[k])} inputs; "
                                 f"only a chain of layers is supported")
    order = [ins[0]]
    seen = {ins[0]}
    while order[-1] != outs[0]:
        nxt = succ.get(order[-1], [])
        if not nxt:
            raise NetImportError(f"{where}: node {order[-1]} ({kinds[order[-1]]}) has no "
                                 f"successor; the chain does not reach the Output")
        if nxt[0] in seen:
            raise NetImportError(f"{where}: node {nxt[0]} closes a loop (recurrence is not "
                                 f"supported)")
        order.append(nxt[0])
        seen.add(nxt[0])
    extra = sorted(set(nodes) - seen)
    if extra:
        raise NetImportError(f"{where}: node {extra[0]} ({kinds[extra[0]]}) is not on the "
                             f"Input -> Output chain")
    return order


def _meta_value(meta, key):
    v = meta.get(key)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _resolve(graph, where, *, dt, discretization, if_gain, timesteps, dt_us, count_clip):
    """The import options, explicit ones first, then the graph's metadata."""
    gmeta = dict(getattr(graph, "metadata", None) or {})
    notes = []
    if dt is None and _meta_value(gmeta, "dt") is not None:
        dt = float(_meta_value(gmeta, "dt"))
        notes.append(f"dt {dt!r} s from the graph's metadata")
    if discretization is None and _meta_value(gmeta, "discretization") is not None:
        discretization = str(_meta_value(gmeta, "discretization"))
        notes.append(f"discretization {discretization!r} from the graph's metadata")
    if discretization is not None and discretization not in DISCRETIZATIONS:
        raise NetImportError(f"{where}: discretization {discretization!r} is not one of "
                             f"{', '.join(DISCRETIZATIONS)}")
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise NetImportError(f"{where}: dt {dt!r} must be a positive number of seconds")
    if if_gain not in ("r", "r_dt"):
        raise NetImportError(f"{where}: if_gain {if_gain!r} is not 'r' or 'r_dt'")
    given = {"timesteps": timesteps, "dt_us": dt_us, "count_clip": count_clip}
    for key, v in given.items():
        if v is None and _meta_value(gmeta, key) is not None:
            notes.append(f"{key} {int(_meta_value(gmeta, key))} from the graph's metadata")
    timesteps = timesteps if timesteps is not None else _meta_value(gmeta, "timesteps")
    if timesteps is None:
        raise NetImportError(f"{where}: the number of steps is not in the graph; give "
                             f"--timesteps")
    if dt_us is None:
        dt_us = _meta_value(gmeta, "dt_us")
    if dt_us is None:
        dt_us = int(round(dt * 1e6)) if dt is not None else 1000
    count_clip = count_clip if count_clip is not None else (_meta_value(gmeta, "count_clip") or 1)
    readout = _meta_value(gmeta, "readout")
    return {"dt": dt, "discretization": discretization, "timesteps": int(timesteps),
            "dt_us": int(dt_us), "count_clip": int(count_clip), "readout": readout,
            "notes": notes}


def import_nir(graph, *, dt=None, discretization=None, if_gain="r", timesteps=None,
               dt_us=None, count_clip=None, integer=None, where="NIR graph"):
    """Translate a NIR graph into a :class:`quant.ir.FloatNet`.

    Parameters
    ----------
    graph : nir.NIRGraph or str or Path
        A graph, or a file to read with ``nir.read``.
    dt : float or None
        Step length in seconds (needed by LIF nodes and ``if_gain="r_dt"``).
    discretization : {"euler", "exp"} or None
        How ``tau`` becomes ``beta`` (needed by LIF nodes).
    if_gain : {"r", "r_dt"}
        Input gain of IF nodes (see the module docstring).
    timesteps, dt_us, count_clip : int or None
        The model's input settings; ``None`` takes them from the graph's metadata
        (``dt_us`` defaults to ``dt`` in microseconds, ``count_clip`` to 1);
        ``timesteps`` must come from one or the other.
    integer : bool or None
        Integer or float mode (:mod:`quant.importers.builder`); ``None`` decides from
        the weights.

    Returns
    -------
    net : FloatNet
        ``meta["import"]`` records dt, the discretization and every choice made.
    integer : bool
    hints : dict
        Per-layer widths and leak fractions from :mod:`quant.nir_export` metadata
        (``{}`` for foreign graphs); :func:`model_from_nir` applies them.
    """
    from .builder import NetBuilder
    if not hasattr(graph, "nodes"):
        where = str(graph)
        graph = read_graph(graph)
    from .nir_graph import needs_graph_import
    if needs_graph_import(graph):
        raise NetImportError(f"{where}: a graph (branches, joins, recurrence, delays or "
                             f"current-based nodes) becomes a version-2 model: use "
                             f"model_from_nir")
    opts = _resolve(graph, where, dt=dt, discretization=discretization, if_gain=if_gain,
                    timesteps=timesteps, dt_us=dt_us, count_clip=count_clip)
    notes = opts["notes"]
    dt, discretization = opts["dt"], opts["discretization"]
    timesteps, dt_us, count_clip, readout = (opts["timesteps"], opts["dt_us"],
                                             opts["count_clip"], opts["readout"])

    order = _chain(graph, where)
    inp = graph.nodes[order[0]]
    shape = np.asarray(inp.input_type["input"]).astype(int).reshape(-1).tolist()
    if len(shape) == 1:
        shape = [shape[0], 1, 1]
        notes.append(f"flat input of {shape[0]} values read as shape {shape}")
    if len(shape) != 3:
        raise NetImportError(f"{where}: node {order[0]} (Input): shape {shape} is not "
                             f"(P, H, W)")
    builder = NetBuilder(tuple(shape), where, noun="node")
    ctx = _Ctx(builder, dt, discretization, if_gain, notes)
    hints = {}
    for name in order:
        node = graph.nodes[name]
        tname = type(node).__name__
        handler = handler_for(FRAMEWORK, tname)
        if handler is None:
            raise NetImportError(f"{where}: node {name} ({tname}): unsupported node type")
        n_before = len(builder.records)
        handler(node, name, ctx)
        if len(builder.records) > n_before:
            rec = builder.records[-1]
            syn = graph.nodes[order[order.index(name) - 1]]
            m = {**{k: _meta_value(syn.metadata or {}, k) for k in (syn.metadata or {})},
                 **{k: _meta_value(node.metadata or {}, k) for k in (node.metadata or {})}}
            if "layer" in m:
                lname = str(m["layer"])
                if not builder.rename_last(lname):
                    raise NetImportError(f"{where}: node {name}: duplicate layer name "
                                         f"{lname!r} in the metadata")
            hints[rec.name] = m
    meta = {"import": {"source": "nir", "file": str(where), "dt_s": dt,
                       "discretization": discretization, "if_gain": if_gain,
                       "if_flavor": "nir"}}
    net, integer = builder.float_net(timesteps=int(timesteps), dt_us=int(dt_us),
                                     count_clip=int(count_clip),
                                     readout=str(readout or "spike_count"),
                                     integer=integer, meta=meta)
    net.meta["import"]["notes"] = notes + net.meta["import"]["notes"]
    return net, integer, hints


def model_from_nir(graph, *, weight_bits=None, state_bits=None, beta_frac_bits=None,
                   **kwargs):
    """Import and quantize; widths recorded by :mod:`quant.nir_export` are restored.

    Explicit ``weight_bits`` / ``state_bits`` override the recorded ones. Returns the
    :class:`sim.model.Model`.
    """
    from dataclasses import replace

    from sim.model import validate_model

    from . import to_model
    if_flavor = kwargs.pop("if_flavor", "nir")
    where = kwargs.pop("where", "NIR graph")
    if not hasattr(graph, "nodes"):
        where = str(graph)
        graph = read_graph(graph)
    from .nir_graph import import_nir_graph, needs_graph_import
    if needs_graph_import(graph, if_flavor):
        opts = _resolve(graph, where, dt=kwargs.get("dt"),
                        discretization=kwargs.get("discretization"),
                        if_gain=kwargs.get("if_gain", "r"), timesteps=kwargs.get("timesteps"),
                        dt_us=kwargs.get("dt_us"), count_clip=kwargs.get("count_clip"))
        return import_nir_graph(graph, dt=opts["dt"], discretization=opts["discretization"],
                                if_gain=kwargs.get("if_gain", "r"), if_flavor=if_flavor,
                                timesteps=opts["timesteps"], dt_us=opts["dt_us"],
                                count_clip=opts["count_clip"], integer=kwargs.get("integer"),
                                weight_bits=weight_bits, state_bits=state_bits,
                                beta_frac_bits=beta_frac_bits, readout=opts["readout"],
                                where=where, notes=opts["notes"])
    net, integer, hints = import_nir(graph, where=where, **kwargs)
    sb = state_bits
    if sb is None:
        recorded = [h["state_bits"] for h in hints.values() if "state_bits" in h]
        sb = max(recorded) if recorded else 16
    model = to_model(net, integer, weight_bits=weight_bits, state_bits=int(sb),
                     beta_frac_bits=beta_frac_bits)
    if not integer or not hints:
        return model
    layers = []
    restored = False
    for i, layer in enumerate(model.layers):
        h = hints.get(layer.name, {})
        kw = {}
        if weight_bits is None and h.get("weight_bits") is not None and layer.weights is not None:
            kw["weight_bits"] = int(h["weight_bits"])
        if state_bits is None and h.get("state_bits") is not None:
            kw["state_bits"] = int(h["state_bits"])
        if "layer" in h:        # written by quant.nir_export: its float scale, or none
            kw["scale"] = float(h["scale"]) if h.get("scale") is not None else None
        if h.get("threshold_per_channel") is not None:
            kw["threshold_per_channel"] = bool(h["threshold_per_channel"])
        if beta_frac_bits is None and h.get("beta_frac_bits") is not None:
            f = int(h["beta_frac_bits"])
            num = layer.beta_num << (f - layer.beta_frac_bits) if f >= layer.beta_frac_bits \
                else None
            if num is not None and num == h.get("beta_num", num):
                kw["beta_num"], kw["beta_frac_bits"] = num, f
        restored |= bool(kw) or h.get("acc_bits") is not None
        new = replace(layer, **kw)
        need = new.required_acc_bits(model.count_clip_of(i))
        acc = int(h["acc_bits"]) if h.get("acc_bits") is not None else need
        new.acc_bits = max(acc, need)
        layers.append(new)
    model.layers = layers
    if restored:
        model.meta.setdefault("import", {}).setdefault("notes", []).append(
            "widths and leak fractions restored from the graph's metadata")
    return validate_model(model, "imported NIR model")
