"""Import a sinabs network (a ``torch.nn.Sequential``) as a version-2 model.

Layers (one handler each, registered under ``"sinabs"``, see :mod:`quant.importers`):
``Conv2d``, ``Linear``, ``sinabs.layers.SumPool2d``, ``Flatten``, ``Dropout`` /
``Identity`` (skipped), and the neurons ``IAF``, ``IAFSqueeze``, ``IAFRecurrent``,
``LIF``, ``LIFSqueeze``, ``LIFRecurrent``. Every neuron layer closes one contract layer
with one synapse from the layer before (its recurrent ``rec_connect``, a ``Linear`` or
``Conv2d``, adds a synapse from itself with ``delay`` 1).

How sinabs' neurons map (``sinabs/layers/functional/lif.py``, per step)::

    i     = alpha_syn * (i + x)            (only with tau_syn)
    v     = alpha_mem * v + g * i          (g = 1 - alpha_mem with norm_input, else 1)
    s     = spike_fn(v)                    MultiSpike: floor(v / thr) for v > 0;
                                           SingleSpike: v >= thr; MaxSpike(m): min(m, ...)
    v     = v - s * thr  (MembraneSubtract)  or  0 where s > 0 (MembraneReset(0))
    v     = max(v, min_v_mem)              (when min_v_mem is set)

* ``MultiSpike`` is a ``spike_limit`` the state range never reaches
  (``state_max // threshold``), ``MaxSpike(m)`` is ``spike_limit = m``, ``SingleSpike`` is 1;
  sinabs fires on ``v >= thr`` (no strict compare);
* ``min_v_mem`` is ``v_min``: sinabs bounds the membrane after the reset, the contract
  before the spike; both give the same spikes and states, because a membrane below the
  bound never spikes and one that spikes stays above ``-thr`` after the reset;
* ``alpha_mem = exp(-1/tau_mem)`` is the leak; subtracting the threshold *before* the
  leak (sinabs) differs from the contract's subtract after it unless ``alpha_mem`` is 1:
  ``LIF`` with ``MembraneSubtract`` and a leak is refused (use ``MembraneReset``);
* with ``tau_syn`` the layer is current-based with ``alpha_syn``; sinabs leaks the
  current once more before the membrane sees it, which is the factor ``alpha_syn`` on the
  weights and bias.

Integer weights, biases and thresholds give integer mode (exact); anything else float
mode (:mod:`quant.importers.graph`). ``tau_syn`` with ``train_alphas``, ``MembraneReset``
to a value other than 0, ``MembraneSubtract`` of another value than the threshold,
groups and dilation are refused with a message naming the layer.
"""

from __future__ import annotations

import math

import numpy as np

from . import NetImportError, handler_for, register, supported_types
from .graph import V_MIN_MINUS_THRESHOLD, GLayer, GSynapse, graph_model

__all__ = ["import_sinabs"]

FRAMEWORK = "sinabs"


def _np(t):
    import torch
    return torch.as_tensor(t).detach().cpu().double().numpy()


def _pair(v, what, where):
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise NetImportError(f"{where}: {what} {tuple(v)} is not square")
        return int(v[0])
    return int(v)


class _Ctx:
    def __init__(self, input_shape, where):
        self.where = where
        self.noun = "layer"
        self.builder = self
        self.shape = tuple(int(s) for s in input_shape)
        self.source = "input"
        self.pending = None            # the GSynapse waiting for its neurons
        self.layers = []
        self.notes = []


def _need_no_op(ctx, name, what):
    if ctx.pending is not None:
        raise NetImportError(f"{ctx.where}: layer {name} ({what}) follows "
                             f"{ctx.pending.type} {ctx.pending.origin} without neurons in "
                             f"between")


def _conv_synapse(m, name, where, shape, source):
    from sim.geometry import conv_out_size
    if m.groups != 1:
        raise NetImportError(f"{where}: groups={m.groups} is not representable (no groups)")
    if _pair(m.dilation, "dilation", where) != 1:
        raise NetImportError(f"{where}: dilation {tuple(m.dilation)} is not representable")
    if m.padding_mode != "zeros":
        raise NetImportError(f"{where}: padding_mode {m.padding_mode!r} is not supported")
    k = _pair(m.kernel_size, "kernel", where)
    s = _pair(m.stride, "stride", where)
    p = m.padding
    if isinstance(p, str):
        p = {"valid": 0}.get(p, (k - 1) // 2 if p == "same" and k % 2 and s == 1 else None)
        if p is None:
            raise NetImportError(f"{where}: padding {m.padding!r} is not supported")
    p = _pair(p, "padding", where)
    if len(shape) != 3 or shape[0] != m.in_channels:
        raise NetImportError(f"{where}: expects {m.in_channels} input channels, gets "
                             f"{list(shape)}")
    out = (m.out_channels, conv_out_size(shape[1], k, s, p), conv_out_size(shape[2], k, s, p))
    syn = GSynapse(source=source, type="conv2d", weight=_np(m.weight), kernel=k, stride=s,
                   padding=p, origin=f"layer {name}")
    return syn, out, None if m.bias is None else _np(m.bias)


#: Synapse builders for ``rec_connect`` of the recurrent layers, by module type:
#: ``fn(module, name, where, shape, source) -> (GSynapse, out_shape, bias)``.
REC_CONNECT = FRAMEWORK + ".rec_connect"
register(REC_CONNECT, "Conv2d")(_conv_synapse)


@register(FRAMEWORK, "Conv2d")
def _conv2d(m, name, ctx):
    where = f"{ctx.where}: layer {name} (Conv2d)"
    _need_no_op(ctx, name, "Conv2d")
    syn, out, bias = _conv_synapse(m, name, where, ctx.shape, ctx.source)
    syn.hints["bias"] = bias
    ctx.pending, ctx.shape = syn, out


def _linear_synapse(m, name, where, shape, source):
    n_in = int(np.prod(shape))
    if m.in_features != n_in:
        raise NetImportError(f"{where}: expects {m.in_features} inputs, the previous layer "
                             f"gives {n_in} (shape {list(shape)})")
    syn = GSynapse(source=source, type="linear", weight=_np(m.weight), origin=f"layer {name}")
    return syn, (int(m.out_features),), None if m.bias is None else _np(m.bias)


register(REC_CONNECT, "Linear")(_linear_synapse)


@register(FRAMEWORK, "Linear")
def _linear(m, name, ctx):
    where = f"{ctx.where}: layer {name} (Linear)"
    _need_no_op(ctx, name, "Linear")
    syn, out, bias = _linear_synapse(m, name, where, ctx.shape, ctx.source)
    syn.hints["bias"] = bias
    ctx.pending, ctx.shape = syn, out


@register(FRAMEWORK, "SumPool2d")
def _sumpool(m, name, ctx):
    where = f"{ctx.where}: layer {name} (SumPool2d)"
    _need_no_op(ctx, name, "SumPool2d")
    k = _pair(m.kernel_size, "kernel", where)
    s = k if m.stride is None else _pair(m.stride, "stride", where)
    if s != k or len(ctx.shape) != 3:
        raise NetImportError(f"{where}: kernel {k}, stride {s}: the contract pools (C, H, W) "
                             f"with stride == kernel")
    c, h, w = ctx.shape
    ctx.pending = GSynapse(source=ctx.source, type="sumpool2d", kernel=k, stride=k, padding=0,
                           origin=f"layer {name}")
    ctx.shape = (c, h // k, w // k)


@register(FRAMEWORK, "Flatten")
def _flatten(m, name, ctx):
    if m.start_dim not in (1, -3) or m.end_dim != -1:
        raise NetImportError(f"{ctx.where}: layer {name} (Flatten): only the full flatten of "
                             f"(C, H, W) (start_dim=1) is supported")
    # the contract flattens implicitly before a linear synapse: nothing to do


@register(FRAMEWORK, "Dropout", "Dropout2d", "Identity")
def _skip(m, name, ctx):
    """Identity at inference time."""


@register(FRAMEWORK, "IAF", "IAFSqueeze", "IAFRecurrent", "LIF", "LIFSqueeze", "LIFRecurrent")
def _lif(m, name, ctx):
    from sinabs.activation import MaxSpike, MembraneReset, MembraneSubtract, MultiSpike, \
        SingleSpike
    tname = type(m).__name__
    where = f"{ctx.where}: layer {name} ({tname})"
    if ctx.pending is None:
        raise NetImportError(f"{where}: a neuron layer without a preceding Conv2d/Linear/"
                             f"SumPool2d")
    syn = ctx.pending
    thr = _np(m.spike_threshold).reshape(-1)
    if thr.size != 1:
        raise NetImportError(f"{where}: spike_threshold has {thr.size} values; sinabs' "
                             f"threshold is one number")
    thr = float(thr[0])
    alpha = float(_np(m.alpha_mem_calculated).reshape(-1)[0])
    alpha = 1.0 if not math.isfinite(alpha) else alpha
    from .nir import _snap
    alpha = _snap(alpha, ctx.notes, f"{name}: alpha_mem")
    gain = (1.0 - alpha) if getattr(m, "norm_input", False) else 1.0
    if gain <= 0:
        raise NetImportError(f"{where}: norm_input with alpha_mem 1 gives the input gain 0")
    fn = m.spike_fn
    spike_limits = {MultiSpike: lambda f: None, SingleSpike: lambda f: 1,
                    MaxSpike: lambda f: int(f.max_num_spikes_per_bin)}
    key = fn if isinstance(fn, type) else type(fn)      # a class, or an instance (MaxSpike)
    if key not in spike_limits:
        raise NetImportError(f"{where}: spike_fn {getattr(fn, '__name__', fn)!r} is not "
                             f"MultiSpike, SingleSpike or MaxSpike")
    limit = spike_limits[key](fn)
    rf = m.reset_fn
    if isinstance(rf, MembraneSubtract):
        if rf.subtract_value is not None and rf.subtract_value != thr:
            raise NetImportError(f"{where}: MembraneSubtract({rf.subtract_value:g}) subtracts "
                                 f"another value than the threshold {thr:g}")
        reset = "subtract"
        if alpha != 1.0:
            raise NetImportError(f"{where}: MembraneSubtract with a leak (alpha_mem "
                                 f"{alpha:g}) subtracts before the leak; the contract after "
                                 f"it (use MembraneReset or IAF)")
    elif isinstance(rf, MembraneReset):
        if rf.reset_value != 0:
            raise NetImportError(f"{where}: a reset to {rf.reset_value:g} is not "
                                 f"representable (the contract resets to 0)")
        reset = "zero"
    else:
        raise NetImportError(f"{where}: reset_fn {type(rf).__name__} is not MembraneSubtract "
                             f"or MembraneReset")
    current = None
    if getattr(m, "tau_syn", None) is not None:
        current = float(_np(m.alpha_syn_calculated).reshape(-1)[0])
        current = _snap(current, ctx.notes, f"{name}: alpha_syn")
        gain *= current
    v_min = None
    if m.min_v_mem is not None:
        vm = float(_np(m.min_v_mem).reshape(-1)[0])
        v_min = V_MIN_MINUS_THRESHOLD if vm == -thr else vm
    bias = syn.hints.pop("bias", None)
    synapses = [syn]
    rec = getattr(m, "rec_connect", None)
    if rec is not None:
        rname = f"{name}.rec_connect"
        rwhere = f"{ctx.where}: layer {rname} ({type(rec).__name__})"
        fn = handler_for(REC_CONNECT, type(rec).__name__)
        if fn is None:
            raise NetImportError(f"{rwhere}: rec_connect must be one of "
                                 f"{', '.join(supported_types(REC_CONNECT))}")
        rsyn, rout, rbias = fn(rec, rname, rwhere, ctx.shape, name)
        if int(np.prod(rout)) != int(np.prod(ctx.shape)):
            raise NetImportError(f"{rwhere}: gives {list(rout)}, the layer is "
                                 f"{list(ctx.shape)}")
        rsyn.delay = 1
        synapses.append(rsyn)
        if rbias is not None:
            bias = rbias if bias is None else bias + rbias
    for s in synapses:
        if s.weight is not None:
            s.weight = s.weight * gain
        else:
            s.gain = gain
    c = int(ctx.shape[0])
    gl = GLayer(name=name, out_shape=ctx.shape, synapses=synapses, beta=alpha,
                threshold=np.full(c, thr), reset=reset, strict=False,
                bias=None if bias is None else np.broadcast_to(bias * gain, (c,)).copy(),
                spike_limit=limit, v_min=v_min, current_beta=current, origin=f"layer {name}")
    ctx.layers.append(gl)
    ctx.pending = None
    ctx.source = name


_PREFIX = {"Conv2d": "conv", "Linear": "fc", "SumPool2d": "pool"}


def import_sinabs(net, input_shape, *, timesteps, dt_us=1000, count_clip=1, integer=None,
                  weight_bits=None, state_bits=None, where="sinabs model"):
    """Translate a sinabs ``nn.Sequential`` into a validated version-2 model.

    Layer names are ``<prefix><index>`` of the synaptic layer (``conv0``, ``fc3``,
    ``pool2``) that each neuron layer closes. Returns the :class:`sim.model.Model`
    (``meta.import`` records the source, the mode and the notes).
    """
    import torch.nn as nn
    if not isinstance(net, nn.Sequential):
        raise NetImportError(f"{where}: expected a torch.nn.Sequential, got "
                             f"{type(net).__name__}")
    ctx = _Ctx(input_shape, where)
    op_name = None
    for i, (key, m) in enumerate(net.named_children()):
        tname = type(m).__name__
        handler = handler_for(FRAMEWORK, tname)
        if handler is None:
            raise NetImportError(f"{where}: layer {key} (index {i}, {tname}): unsupported layer "
                                 f"type; supported: "
                                 f"{', '.join(supported_types(FRAMEWORK, rejected=False))}")
        name = f"{_PREFIX[tname]}{i}" if tname in _PREFIX else op_name
        if tname in _PREFIX:
            op_name = name
        handler(m, name or f"layer{i}", ctx)
    if ctx.pending is not None:
        raise NetImportError(f"{where}: the network ends with {ctx.pending.origin} without "
                             f"neurons")
    if not ctx.layers:
        raise NetImportError(f"{where}: no layers were imported")
    meta = {"import": {"source": "sinabs", "file": str(where)}}
    return graph_model(ctx.layers, input_shape=input_shape, timesteps=timesteps, dt_us=dt_us,
                       count_clip=count_clip, integer=integer, weight_bits=weight_bits,
                       state_bits=state_bits, where=where, meta=meta, notes=ctx.notes)
