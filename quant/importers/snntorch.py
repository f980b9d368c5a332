"""Import a ``torch.nn.Sequential`` of torch layers and ``snntorch.Leaky`` neurons.

Supported layers (one handler each, see :mod:`quant.importers`): ``Conv2d``,
``Linear``, ``AvgPool2d``, ``MaxPool2d`` (of spikes), ``Flatten``, ``Dropout`` /
``Dropout2d`` / ``Identity`` (skipped: an exported net runs in eval mode) and
``snntorch.Leaky``. Everything else (``BatchNorm``, other snnTorch neurons, ...) is an
error naming the layer and why.

How snnTorch's ``Leaky`` maps onto the contract
-----------------------------------------------
snnTorch 1.0 (``snntorch/_neurons/leaky.py``) computes, per step ``t`` with input
current ``I[t]`` (the output of the preceding Conv2d/Linear, bias included)::

    reset[t] = mem[t-1] > thr                 # from the *previous* membrane (reset_delay)
    mem[t]   = beta * mem[t-1] + I[t] - reset[t] * thr      # subtract
    mem[t]   = beta * (1 - reset[t]) * mem[t-1] + I[t]      # zero
    mem[t]   = beta * mem[t-1] + I[t]                        # none
    spk[t]   = mem[t] > thr                   # strict compare (Heaviside forward)

with ``beta`` clamped to ``[0, 1]`` and ``mem[-1] = 0``. Since ``reset[t] == spk[t-1]``,
the contract's accumulator ``acc[t] = v[t-1] + I[t]`` equals ``mem[t]`` when its stored
state is ``v[t] = beta * mem[t] - spk[t] * thr`` (subtract), ``0 if spk[t] else
beta * mem[t]`` (zero) or ``beta * mem[t]`` (none): exactly the contract's step 5 with
``threshold = thr``. So snnTorch's delayed reset is the contract's reset, the leak is
``beta``, and the subtracted amount is not leaked on either side. The only differences:

* the compare: snnTorch fires on ``mem > thr``. With integer weights and biases the
  importer works in *integer mode* and writes ``floor(thr) + 1`` (resets zero/none),
  which is exact for integer membranes; with reset subtract the contract's one
  threshold both compares and subtracts, so it stays ``thr`` and the integer model
  also fires when ``mem == thr`` exactly (reported in ``meta.import.notes``);
* the leak: the contract floors ``(v * num) >> frac``. With ``beta = 2**-f`` and
  integer inputs the integer accumulator is ``floor(mem)`` at every step as long as the
  spikes agree (``floor(floor(x) / 2**f) == floor(x / 2**f)``); the spikes then agree
  unless a fractional membrane lies strictly between ``thr`` and ``thr + 1``
  (zero/none) or equals ``thr`` (subtract). With ``beta`` 0 or 1 membranes stay
  integers and nothing differs. Other betas (``3/4``) can round differently.

``reset_delay=False`` (reset applied in the same step) is the same for reset zero
(a zeroed membrane never exceeds a positive threshold, so the extra reset term
vanishes) and for none; for subtract it subtracts again while the membrane stays
above the threshold, which the contract cannot express: an error.

Rejected with an error naming the layer: ``inhibition=True``, ``state_quant``, graded
spikes (``graded_spikes_factor != 1``), per-neuron ``beta`` with different values
(one leak per layer), thresholds that differ inside a channel, non-positive thresholds,
``reset_delay=False`` with subtract.

Pooling: ``AvgPool2d(k)`` sums where torch averages and folds the ``1/k**2`` into the
next threshold or weights (:mod:`quant.importers.builder`); ``MaxPool2d(k)`` of
spikes is an OR (sumpool2d, threshold 1, beta 0).

Files for the command line (:func:`load_sequential`): a ``state_dict`` saved with
``torch.save(net.state_dict(), FILE)`` plus ``--builder ARCH.py`` whose ``build()``
returns the untrained ``nn.Sequential``; or a ``.py`` file whose ``build()`` returns the
trained one; or a whole pickled ``nn.Sequential`` (only when its ``spike_grad`` can be
pickled: snnTorch's default surrogate cannot). Files are unpickled / executed: only
import files you trust. The input shape and the number of steps are not in the file
and are given as options.
"""

from __future__ import annotations

import numpy as np

from . import NetImportError, handler_for, register, reject, supported_types

__all__ = ["import_snntorch", "import_snntorch_model", "load_sequential"]

FRAMEWORK = "snntorch"


class _Ctx:
    def __init__(self, builder, count_clip):
        self.builder = builder
        self.count_clip = count_clip
        #: ``{layer: {"synapses", "bias", "current_beta"}}`` of RLeaky/Synaptic/RSynaptic
        self.extras = {}


def _np(t):
    return t.detach().cpu().double().numpy()


def _pair(v, what, where):
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise NetImportError(f"{where}: {what} {tuple(v)} is not square")
        return int(v[0])
    return int(v)


# -- operators ---------------------------------------------------------------------------

@register(FRAMEWORK, "Conv2d")
def _conv2d(m, name, ctx):
    where = f"{ctx.builder.where}: layer {name} (Conv2d)"
    if m.groups != 1:
        raise NetImportError(f"{where}: groups={m.groups} is not supported (no groups)")
    if _pair(m.dilation, "dilation", where) != 1:
        raise NetImportError(f"{where}: dilation {m.dilation} is not supported")
    if m.padding_mode != "zeros":
        raise NetImportError(f"{where}: padding_mode {m.padding_mode!r} is not supported "
                             f"(zero padding only)")
    k = _pair(m.kernel_size, "kernel", where)
    s = _pair(m.stride, "stride", where)
    p = m.padding
    if isinstance(p, str):
        if p == "valid":
            p = 0
        elif p == "same" and k % 2 == 1 and s == 1:
            p = (k - 1) // 2
        else:
            raise NetImportError(f"{where}: padding {p!r} with kernel {k} is not supported")
    p = _pair(p, "padding", where)
    ctx.builder.add_conv(name, _np(m.weight), None if m.bias is None else _np(m.bias), s, p)


@register(FRAMEWORK, "Linear")
def _linear(m, name, ctx):
    ctx.builder.add_linear(name, _np(m.weight), None if m.bias is None else _np(m.bias))


@register(FRAMEWORK, "AvgPool2d")
def _avgpool(m, name, ctx):
    where = f"{ctx.builder.where}: layer {name} (AvgPool2d)"
    k = _pair(m.kernel_size, "kernel", where)
    s = k if m.stride is None else _pair(m.stride, "stride", where)
    p = _pair(m.padding, "padding", where)
    if m.ceil_mode:
        raise NetImportError(f"{where}: ceil_mode=True is not supported")
    ctx.builder.add_pool(name, k, s, p, average=True, divisor=m.divisor_override)


@register(FRAMEWORK, "MaxPool2d")
def _maxpool(m, name, ctx):
    where = f"{ctx.builder.where}: layer {name} (MaxPool2d)"
    k = _pair(m.kernel_size, "kernel", where)
    s = k if m.stride is None else _pair(m.stride, "stride", where)
    if m.ceil_mode or _pair(m.dilation, "dilation", where) != 1:
        raise NetImportError(f"{where}: ceil_mode/dilation are not supported")
    ctx.builder.add_maxpool(name, k, s, _pair(m.padding, "padding", where),
                            first_layer_clip=ctx.count_clip)


@register(FRAMEWORK, "Flatten")
def _flatten(m, name, ctx):
    if m.start_dim not in (1, -3) or m.end_dim != -1:
        raise NetImportError(f"{ctx.builder.where}: layer {name} (Flatten): start_dim "
                             f"{m.start_dim}, end_dim {m.end_dim}: only the full flatten of "
                             f"(C, H, W) (start_dim=1) is supported")
    ctx.builder.add_flatten(name)


@register(FRAMEWORK, "Dropout", "Dropout2d", "Identity")
def _skip(m, name, ctx):
    """Identity at inference time."""


reject(FRAMEWORK, "BatchNorm is not supported; fold it into the preceding Conv2d/Linear "
       "(w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) "
       "+ beta) before importing", "BatchNorm1d", "BatchNorm2d")
reject(FRAMEWORK, "only snntorch.Leaky, RLeaky, Synaptic and RSynaptic neurons map onto "
       "the contract", "Alpha", "Lapicque", "SLSTM", "SConv2dLSTM", "LeakyParallel")
reject(FRAMEWORK, "analog activations are not spiking neurons; use snntorch.Leaky",
       "ReLU", "Sigmoid", "Tanh", "LeakyReLU")


# -- neurons -----------------------------------------------------------------------------

def _torch_broadcast(value, shape, what, where):
    """``value`` broadcast to ``shape`` with torch's rules (trailing dimensions)."""
    a = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        raise NetImportError(f"{where}: {what} of shape {tuple(a.shape)} does not broadcast "
                             f"to the layer's output {tuple(shape)}") from None


@register(FRAMEWORK, "Leaky", "RLeaky", "Synaptic", "RSynaptic")
def _leaky(m, name, ctx):
    from snntorch._neurons.neurons import SpikingNeuron
    b = ctx.builder
    tname = type(m).__name__
    where = f"{b.where}: layer {name} ({tname})"
    if getattr(m, "inhibition", False):
        raise NetImportError(f"{where}: inhibition=True (winner-take-all) is not supported")
    if getattr(m, "state_quant", False):
        raise NetImportError(f"{where}: state_quant is not supported; the contract's own "
                             f"integer state replaces it")
    g = _np(m.graded_spikes_factor) if hasattr(m, "graded_spikes_factor") else np.array(1.0)
    if not np.all(g == 1.0):
        raise NetImportError(f"{where}: graded spikes (graded_spikes_factor "
                             f"{float(g.reshape(-1)[0]):g}) are not supported; spikes are 0/1")
    reset = list(SpikingNeuron.reset_dict)[int(m.reset_mechanism_val)]
    if reset == "subtract" and not getattr(m, "reset_delay", True):
        raise NetImportError(f"{where}: reset_delay=False with reset 'subtract' subtracts "
                             f"again while the membrane stays above threshold; the contract "
                             f"cannot express that (use reset_delay=True)")
    op = b.op if b.op is not None else None
    if op is None and b.pool is None:
        raise NetImportError(f"{where}: a Leaky without a preceding Conv2d/Linear/AvgPool2d")
    out_shape = op.out_shape if op is not None else b.pending_pool_shape
    torch_shape = (int(np.prod(out_shape)),) if b.flat else tuple(out_shape)
    beta = np.clip(_torch_broadcast(_np(m.beta), torch_shape, "beta", where), 0.0, 1.0)
    if not np.all(beta == beta.reshape(-1)[0]):
        raise NetImportError(f"{where}: per-neuron beta values differ "
                             f"({beta.min():g}..{beta.max():g}); the contract has one leak "
                             f"per layer")
    if tname != "Leaky" and reset == "zero":
        raise NetImportError(f"{where}: reset 'zero' of {tname} zeroes the whole membrane of "
                             f"the step after a spike, input included; the contract keeps that "
                             f"step's input (use reset 'subtract' or 'none')")
    thr_raw = _np(m.threshold)
    thr = _torch_broadcast(thr_raw, torch_shape, "threshold", where).reshape(out_shape)
    b.add_neuron(name, beta=float(beta.reshape(-1)[0]), threshold=thr, reset=reset,
                 strict=True, threshold_per_channel=thr_raw.size > 1)
    if tname == "Leaky":
        return
    lname = b.records[-1].name
    extra = {}
    if tname in ("Synaptic", "RSynaptic"):
        alpha = np.clip(_torch_broadcast(_np(m.alpha), torch_shape, "alpha", where), 0.0, 1.0)
        if not np.all(alpha == alpha.reshape(-1)[0]):
            raise NetImportError(f"{where}: per-neuron alpha values differ; the contract has "
                                 f"one current leak per layer")
        extra["current_beta"] = float(alpha.reshape(-1)[0])
    if tname in ("RLeaky", "RSynaptic"):
        extra["synapses"], extra["bias"] = _recurrent(m, lname, tuple(out_shape), where)
    ctx.extras[lname] = extra


#: Handlers of the recurrent connection of RLeaky/RSynaptic, by module type:
#: ``fn(rec, lname, shape, where) -> (GSynapse, bias or None)``.
RECURRENT = FRAMEWORK + ".recurrent"


def _recurrent(m, lname, shape, where):
    """The recurrent connection of RLeaky/RSynaptic: a synapse from the layer itself with
    delay 1 (snnTorch adds ``recurrent(spk[t-1])``), and its bias."""
    rec = m.recurrent
    t = type(rec).__name__
    fn = handler_for(RECURRENT, t)
    if fn is None:
        raise NetImportError(f"{where}: recurrent connection {t} is not supported; "
                             f"supported: {', '.join(supported_types(RECURRENT))}")
    syn, bias = fn(rec, lname, shape, where)
    return [syn], bias


@register(RECURRENT, "Linear")
def _rec_linear(rec, lname, shape, where):
    from .graph import GSynapse
    return (GSynapse(source=lname, type="linear", weight=_np(rec.weight), delay=1,
                     origin=f"layer {lname} (Linear recurrent)"),
            None if rec.bias is None else _np(rec.bias))


@register(RECURRENT, "Conv2d")
def _rec_conv(rec, lname, shape, where):
    from .graph import GSynapse
    k = _pair(rec.kernel_size, "kernel", where)
    p = _pair(rec.padding, "padding", where)
    if k % 2 == 0 or rec.groups != 1 or _pair(rec.dilation, "dilation", where) != 1:
        raise NetImportError(f"{where}: the recurrent Conv2d (kernel {k}) must keep the "
                             f"shape (odd kernel, no groups, no dilation)")
    return (GSynapse(source=lname, type="conv2d", weight=_np(rec.weight), kernel=k, stride=1,
                     padding=p, delay=1, origin=f"layer {lname} (Conv2d recurrent)"),
            None if rec.bias is None else _np(rec.bias))


@register(RECURRENT, "RecurrentOneToOne")
def _rec_one_to_one(rec, lname, shape, where):
    from .builder import per_channel
    from .graph import GSynapse
    v = per_channel(_np(rec.V), shape, "V", where)
    return (GSynapse(source=lname, type="identity", weight=v, delay=1,
                     origin=f"layer {lname} (one-to-one recurrent)"), None)


# -- driver ------------------------------------------------------------------------------

_PREFIX = {"Conv2d": "conv", "Linear": "fc", "AvgPool2d": "pool", "MaxPool2d": "maxpool",
           "Leaky": "lif", "RLeaky": "lif", "Synaptic": "lif", "RSynaptic": "lif"}


def import_snntorch(net, input_shape, *, timesteps, dt_us=1000, count_clip=1, integer=None,
                    readout="spike_count", where="snntorch model"):
    """Translate an ``nn.Sequential`` into a :class:`quant.ir.FloatNet`.

    Parameters
    ----------
    net : torch.nn.Sequential
        In eval mode (dropout is skipped either way).
    input_shape : tuple
        ``(P, H, W)`` of one input frame.
    timesteps, dt_us, count_clip : int
        The model's input settings (not part of the torch module).
    integer : bool or None
        Integer mode (exact, see the module docstring), float mode, or ``None``: integer
        when every weight and bias is an integer.
    readout : {"spike_count", "membrane"}
        ``membrane``: the scores are the last Leaky's membrane at the last step (its
        threshold is then ignored, as the contract says).
    where : str
        Prefix of error messages (the file name).

    Returns
    -------
    net : FloatNet
        ``meta["import"]`` records the source, the mode and what was folded.
    integer : bool
        The mode used; pass it to :func:`quant.importers.to_model`.
    """
    import torch.nn as nn

    from .builder import NetBuilder
    if not isinstance(net, nn.Sequential):
        raise NetImportError(f"{where}: expected a torch.nn.Sequential, got "
                             f"{type(net).__name__}")
    builder = NetBuilder(input_shape, where)
    ctx = _Ctx(builder, count_clip)
    for i, (key, m) in enumerate(net.named_children()):
        tname = type(m).__name__
        name = f"{_PREFIX.get(tname, tname.lower())}{i}"
        handler = handler_for(FRAMEWORK, tname)
        if handler is None:
            raise NetImportError(f"{where}: layer {name} (index {i}, {tname}): unsupported layer "
                                 f"type; supported: "
                                 f"{', '.join(supported_types(FRAMEWORK, rejected=False))}")
        handler(m, name, ctx)
    meta = {"import": {"source": "snntorch", "file": str(where)}}
    if readout not in ("spike_count", "membrane"):
        raise NetImportError(f"{where}: readout {readout!r} is not spike_count or membrane")
    if ctx.extras:
        raise NetImportError(f"{where}: RLeaky/Synaptic/RSynaptic layers make a version-2 "
                             f"model: use import_snntorch_model")
    return builder.float_net(timesteps=timesteps, dt_us=dt_us, count_clip=count_clip,
                             readout=readout, integer=integer, meta=meta)


def import_snntorch_model(net, input_shape, *, timesteps, dt_us=1000, count_clip=1,
                          integer=None, readout="spike_count", weight_bits=None,
                          state_bits=None, beta_frac_bits=None, where="snntorch model"):
    """Import and quantize any supported ``nn.Sequential`` into a :class:`sim.model.Model`.

    A net of ``Leaky`` neurons goes through :func:`import_snntorch` and
    :func:`quant.importers.to_model` (version-1 chain); one with ``RLeaky`` (a recurrent
    synapse from the layer itself, delay 1: snnTorch adds ``recurrent(spk[t-1])``),
    ``Synaptic`` (current-based: ``syn = alpha syn + I``, ``mem = beta mem + syn``) or
    ``RSynaptic`` (both) through :mod:`quant.importers.graph` (version 2). Their reset
    ``zero`` clears the whole membrane of the step after a spike and is refused.
    """
    import torch.nn as nn

    from . import to_model
    from .builder import NetBuilder
    from .graph import graph_model
    if not isinstance(net, nn.Sequential):
        raise NetImportError(f"{where}: expected a torch.nn.Sequential, got "
                             f"{type(net).__name__}")
    builder = NetBuilder(input_shape, where)
    ctx = _Ctx(builder, count_clip)
    for i, (key, m) in enumerate(net.named_children()):
        tname = type(m).__name__
        name = f"{_PREFIX.get(tname, tname.lower())}{i}"
        handler = handler_for(FRAMEWORK, tname)
        if handler is None:
            raise NetImportError(f"{where}: layer {name} (index {i}, {tname}): unsupported layer "
                                 f"type; supported: "
                                 f"{', '.join(supported_types(FRAMEWORK, rejected=False))}")
        handler(m, name, ctx)
    if not ctx.extras:
        fnet, integer = import_snntorch(net, input_shape, timesteps=timesteps, dt_us=dt_us,
                                        count_clip=count_clip, integer=integer,
                                        readout=readout, where=where)
        return to_model(fnet, integer, weight_bits=weight_bits, state_bits=state_bits or 16,
                        beta_frac_bits=beta_frac_bits)
    meta = {"import": {"source": "snntorch", "file": str(where)}}
    return graph_model(builder.graph_layers(ctx.extras), input_shape=input_shape,
                       timesteps=timesteps, dt_us=dt_us, count_clip=count_clip,
                       readout=readout, integer=integer, weight_bits=weight_bits,
                       state_bits=state_bits, beta_frac_bits=beta_frac_bits, where=where,
                       meta=meta, notes=builder.notes)


def _build_from(builder_path):
    """Run a Python file and call its ``build()`` (the architecture of a state dict)."""
    import runpy
    import torch.nn as nn
    try:
        ns = runpy.run_path(str(builder_path), run_name="snn_import_builder")
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - the builder file is user input
        raise NetImportError(f"{builder_path}: running it failed: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]}") from None
    build = ns.get("build")
    if not callable(build):
        raise NetImportError(f"{builder_path}: defines no function build() returning the "
                             f"nn.Sequential")
    net = build()
    if not isinstance(net, nn.Sequential):
        raise NetImportError(f"{builder_path}: build() returned a {type(net).__name__}, "
                             f"expected a torch.nn.Sequential")
    return net


def load_sequential(path, builder=None):
    """Load the network to import.

    Parameters
    ----------
    path : str or Path
        ``.py``: a file whose ``build()`` returns the trained ``nn.Sequential``;
        otherwise a ``torch.save`` file holding either a whole ``nn.Sequential``
        (unpickled: only load files you trust; snnTorch's default surrogate is a closure
        that cannot be pickled, so this works only with picklable ``spike_grad``) or a
        ``state_dict``, whose architecture comes from ``builder``.
    builder : str or Path or None
        A ``.py`` file whose ``build()`` returns the untrained ``nn.Sequential``.
    """
    import torch
    import torch.nn as nn
    path = str(path)
    if path.endswith(".py"):
        net = _build_from(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 - any unpickling problem is bad input
            raise NetImportError(f"{path}: cannot load a torch file: "
                                 f"{' '.join(str(e).split())[:200]}") from None
        if isinstance(obj, nn.Sequential):
            net = obj
        elif isinstance(obj, dict):
            if builder is None:
                raise NetImportError(f"{path}: holds a state_dict; give --builder FILE.py "
                                     f"whose build() returns the nn.Sequential")
            net = _build_from(builder)
            try:
                net.load_state_dict(obj)
            except Exception as e:  # noqa: BLE001
                raise NetImportError(f"{path}: the state_dict does not fit {builder}: "
                                     f"{' '.join(str(e).split())[:200]}") from None
        else:
            raise NetImportError(f"{path}: holds a {type(obj).__name__}, expected an "
                                 f"nn.Sequential or a state_dict")
    net.eval()
    return net
