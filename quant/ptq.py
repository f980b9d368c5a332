"""Post-training quantization: a float network becomes an integer model.

:func:`quantize` maps a :class:`quant.ir.FloatNet` onto the integer rules of the
contract (docs/semantics.md) and returns a validated :class:`sim.model.Model`.

Why one scale per layer suffices
--------------------------------
Spikes are 0/1 (inputs are clipped event counts), so every layer sees integer inputs
whatever the scale of the layer before it. A layer's float state ``v`` and its integer
state ``V`` are related by ``v ~= scale * V``: weights, bias and threshold are divided
by the same ``scale`` and rounded; the leak factor is the same real number on both
sides. Dividing everything by one positive number does not change which neurons fire,
so the integer model differs from the float one only by rounding (and by clamping to
``state_bits``, which a good scale leaves room for).

How the scale is chosen (``exact=False``)
-----------------------------------------
For each layer, or each output channel with ``per_channel=True``::

    lim      = 2**(weight_bits - 1) - 1
    thr_cap  = max(1, 2**(state_bits - 3))        # an eighth of the positive range
    scale    = max(max|W| / lim,                   # weights use the full width
                   threshold / thr_cap,            # the threshold leaves 3 bits of headroom
                   max|b| / (2**(state_bits-1) - 1))   # the bias fits the state

    W_int   = clip(rint(W / scale), -lim, lim)
    b_int   = rint(b / scale)
    thr_int = max(1, rint(threshold / scale))

Per-channel scales are absorbed by per-channel thresholds (the contract allows one
threshold per output channel); the stored ``scale`` field is the largest channel scale,
all channel scales are recorded in ``model.meta["quantization"]``. The output layer of
a ``membrane`` readout always uses one scale for the whole layer (its scores are
compared across channels). ``sumpool2d`` layers add whole spikes: their scale is 1
and their threshold is rounded.

The leak ``beta`` becomes ``num / 2**frac_bits`` with ``num = rint(beta * 2**frac_bits)``.
``beta_frac_bits=None`` picks the smallest ``frac_bits <= 8`` that represents ``beta``
exactly, and 8 when none does (so ``0.9`` becomes ``230/256``).
``acc_bits`` is the contract's worst case (:meth:`sim.model.Layer.required_acc_bits`).

With ``exact=True`` nothing is rounded: weights, bias and thresholds must already be
integers in range and ``beta`` must be ``num / 2**frac`` exactly; scales are 1.
This is what importers use for nets that were trained with integer parameters.

The helpers :func:`layer_scale`, :func:`quantize_beta` and :func:`quantize_layer_params`
are the single copy of these rules; the fake-quant mode of :mod:`quant.lif` calls them
so that quantization-aware training sees exactly the integers the export writes.
"""

from __future__ import annotations

import math
import re

import numpy as np

from sim.model import (InputSpec, Layer, Model, ModelError, MAX_FRAC_BITS, LAYER_TYPES,
                       RESETS, READOUTS, validate_model)

from .ir import FloatLayer, FloatNet, NetImportError

__all__ = ["quantize", "floatnet_from_model", "layer_scale", "quantize_beta", "quantize_layer_params",
           "DEFAULT_BETA_FRAC_BITS"]

#: ``frac_bits`` used for a leak that no small fraction represents exactly.
DEFAULT_BETA_FRAC_BITS = 8


def _per_channel_values(value, c_out, what, name):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(c_out, float(arr)), False
    arr = arr.reshape(-1)
    if arr.size == 1:
        return np.full(c_out, float(arr[0])), False
    if arr.size != c_out:
        raise NetImportError(f"layer {name}: {what} has {arr.size} values, expected 1 or "
                             f"one per output channel ({c_out})")
    return arr, True


def quantize_beta(beta, frac_bits=None, *, exact=False, name="?"):
    """``beta`` as ``(num, frac_bits)`` with ``num / 2**frac_bits ~= beta``.

    Parameters
    ----------
    beta : float or array
        One leak factor for the layer (an array must hold one repeated value).
    frac_bits : int or None
        Fixed fraction width, or ``None`` to choose (see the module docstring).
    exact : bool
        Require an exact representation (raises otherwise).
    name : str
        Layer name for error messages.

    Raises
    ------
    NetImportError
        For per-channel betas that differ, a beta outside ``[0, 1]`` or, with
        ``exact``, a beta that is not ``num / 2**frac``.
    """
    b = np.asarray(beta, dtype=np.float64).reshape(-1)
    if b.size == 0:
        raise NetImportError(f"layer {name}: beta is empty")
    if not np.all(b == b[0]):
        raise NetImportError(f"layer {name}: per-channel beta values differ "
                             f"({float(b.min()):g}..{float(b.max()):g}); the contract has "
                             f"one leak per layer")
    b = float(b[0])
    if not math.isfinite(b) or b < 0 or b > 1:
        raise NetImportError(f"layer {name}: beta {b!r} is outside 0..1")
    max_frac = MAX_FRAC_BITS if exact else DEFAULT_BETA_FRAC_BITS
    if frac_bits is not None:
        if not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= MAX_FRAC_BITS:
            raise NetImportError(f"layer {name}: beta_frac_bits {frac_bits!r} is outside "
                                 f"0..{MAX_FRAC_BITS}")
        candidates = [int(frac_bits)]
    else:
        candidates = list(range(0, max_frac + 1))
    for f in candidates:
        x = b * (1 << f)
        if x == round(x):
            return int(round(x)), f
    if exact:
        where = f"with frac_bits {frac_bits}" if frac_bits is not None else \
            f"with frac_bits <= {MAX_FRAC_BITS}"
        raise NetImportError(f"layer {name}: beta {b!r} is not num/2**frac {where} "
                             f"(exact mode)")
    f = candidates[-1] if frac_bits is not None else DEFAULT_BETA_FRAC_BITS
    num = int(np.clip(np.rint(b * (1 << f)), 0, 1 << f))
    return num, f


def layer_scale(weight, threshold, bias=None, *, weight_bits=8, state_bits=16,
                per_channel=False):
    """The scale of a weighted layer, one value or one per output channel.

    Parameters
    ----------
    weight : ndarray
        ``(C_out, ...)`` float weights.
    threshold : ndarray
        ``(C_out,)`` positive float thresholds.
    bias : ndarray or None
        ``(C_out,)`` float bias.
    weight_bits, state_bits : int
    per_channel : bool

    Returns
    -------
    ndarray of float64, shape ``(C_out,)``
        The scale of every output channel (all equal unless ``per_channel``).
    """
    w = np.abs(np.asarray(weight, dtype=np.float64))
    c_out = w.shape[0]
    lim = (1 << (weight_bits - 1)) - 1
    thr_cap = max(1, 1 << max(0, state_bits - 3))
    state_max = (1 << (state_bits - 1)) - 1
    thr = np.asarray(threshold, dtype=np.float64).reshape(-1)
    wmax = w.reshape(c_out, -1).max(axis=1) if w.size else np.zeros(c_out)
    bmax = np.zeros(c_out) if bias is None else np.abs(np.asarray(bias, np.float64))
    if not per_channel:
        wmax = np.full(c_out, wmax.max() if c_out else 0.0)
        thr = np.full(c_out, thr.max())
        bmax = np.full(c_out, bmax.max() if c_out else 0.0)
    s = np.maximum.reduce([wmax / lim, thr / thr_cap, bmax / state_max])
    return s


def quantize_layer_params(layer: FloatLayer, *, weight_bits=8, state_bits=16,
                          per_channel=False, exact=False, force_layer_scale=False):
    """Integer weights, bias, thresholds and scales of one float layer.

    Returns
    -------
    dict with ``weights`` (int64 or None), ``bias`` (int64 or None), ``threshold``
    (int64, one per output channel), ``threshold_per_channel`` (bool), ``scale``
    (float64 per output channel).

    Raises
    ------
    NetImportError
        Naming the layer, when it cannot be represented.
    """
    name = layer.name
    c_out = int(layer.out_shape[0])
    thr, thr_pc = _per_channel_values(layer.threshold, c_out, "threshold", name)
    if not np.all(np.isfinite(thr)) or (thr <= 0).any():
        raise NetImportError(f"layer {name}: threshold must be positive, got "
                             f"{float(thr.min()):g}")
    state_max = (1 << (state_bits - 1)) - 1
    w = None if layer.weight is None else np.asarray(layer.weight, dtype=np.float64)
    b = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64).reshape(-1)
    if w is not None and not np.all(np.isfinite(w)):
        raise NetImportError(f"layer {name}: weights hold NaN or infinity")
    if b is not None and not np.all(np.isfinite(b)):
        raise NetImportError(f"layer {name}: bias holds NaN or infinity")
    if b is not None and b.size != c_out:
        raise NetImportError(f"layer {name}: bias has {b.size} values, expected {c_out}")
    if exact or layer.type == "sumpool2d":
        scale = np.ones(c_out)
    else:
        pc = per_channel and not force_layer_scale
        scale = layer_scale(w, thr, b, weight_bits=weight_bits, state_bits=state_bits,
                            per_channel=pc)
        if not np.all(scale > 0):
            raise NetImportError(f"layer {name}: cannot choose a scale (all-zero weights "
                                 f"and threshold)")
    wq = bq = None
    if exact:
        def _int(arr, what):
            if not np.all(arr == np.rint(arr)):
                bad = arr.flat[np.argmax(arr != np.rint(arr))]
                raise NetImportError(f"layer {name}: {what} value {float(bad)!r} is not an "
                                     f"integer (exact mode)")
            return np.rint(arr).astype(np.int64)
        if w is not None:
            wq = _int(w, "weight")
            if layer.type != "sumpool2d":
                lim = (1 << (weight_bits - 1)) - 1
                if wq.size and np.abs(wq).max() > lim:
                    raise NetImportError(f"layer {name}: weight {int(np.abs(wq).max())} does "
                                         f"not fit {weight_bits} bits (|w| <= {lim})")
        if b is not None:
            bq = _int(b, "bias")
        tq = _int(thr, "threshold")
    else:
        if w is not None and layer.type != "sumpool2d":
            lim = (1 << (weight_bits - 1)) - 1
            s = scale.reshape((-1,) + (1,) * (w.ndim - 1))
            wq = np.clip(np.rint(w / s), -lim, lim).astype(np.int64)
        if b is not None:
            bq = np.rint(b / scale).astype(np.int64)
        tq = np.maximum(1, np.rint(thr / scale)).astype(np.int64)
    if bq is not None and bq.size and np.abs(bq).max() > state_max:
        raise NetImportError(f"layer {name}: bias {int(np.abs(bq).max())} does not fit the "
                             f"{state_bits}-bit state")
    if tq.max() > state_max:
        raise NetImportError(f"layer {name}: threshold {int(tq.max())} does not fit the "
                             f"{state_bits}-bit state (max {state_max})")
    per_ch_out = thr_pc or (per_channel and not force_layer_scale and not exact
                            and layer.type != "sumpool2d" and len(set(tq.tolist())) > 1)
    return {"weights": wq, "bias": bq, "threshold": tq, "threshold_per_channel": bool(per_ch_out),
            "scale": scale}


_BAD_CHARS = re.compile(r"\W")


def _layer_name(name, prefix, index):
    raw = f"{prefix or ''}{name if name not in (None, '') else index}"
    out = _BAD_CHARS.sub("_", str(raw))
    if not out or not out.isidentifier():
        out = f"l{out}"
    return out


def _int_dtype(bits):
    for dt in (np.int8, np.int16, np.int32):
        if bits <= np.iinfo(dt).bits:
            return dt
    return np.int64


def quantize(net: FloatNet, *, weight_bits=8, state_bits=16, per_channel=False,
             beta_frac_bits=None, exact=False, name_prefix=None) -> Model:
    """Turn a float network into a validated integer model.

    Parameters
    ----------
    net : FloatNet
    weight_bits : int
        Width of every weight (symmetric range ``|w| <= 2**(weight_bits-1) - 1``).
    state_bits : int
        Width of every membrane state.
    per_channel : bool
        One scale per output channel (absorbed by per-channel thresholds) instead of
        one per layer.
    beta_frac_bits : int or None
        Fraction width of every leak, or ``None`` to choose per layer.
    exact : bool
        The float net already holds the integers (see the module docstring); scales
        are 1 and anything not representable is an error.
    name_prefix : str or None
        Prepended to every layer name. Names are made valid identifiers (other
        characters become ``_``; a name starting with a digit gets an ``l``).

    Returns
    -------
    sim.model.Model
        ``acc_bits`` is the contract's exact worst case for every layer; ``meta`` holds
        ``net.meta`` plus a ``quantization`` record (settings and channel scales).

    Raises
    ------
    NetImportError
        When the net cannot be quantized; the message names the layer.
    """
    if not isinstance(net, FloatNet):
        raise NetImportError(f"expected a FloatNet, got {type(net).__name__}")
    for what, v, lo, hi in (("weight_bits", weight_bits, 2, 16), ("state_bits", state_bits, 2, 32)):
        if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise NetImportError(f"{what} {v!r} is outside {lo}..{hi}")
    if net.readout not in READOUTS:
        raise NetImportError(f"readout {net.readout!r} is not one of {', '.join(READOUTS)}")
    if not net.layers:
        raise NetImportError("the network has no layers")
    layers = []
    scales = {}
    n = len(net.layers)
    for i, fl in enumerate(net.layers):
        name = _layer_name(fl.name, name_prefix, i)
        if fl.type not in LAYER_TYPES:
            raise NetImportError(f"layer {name}: type {fl.type!r} is not one of "
                                 f"{', '.join(LAYER_TYPES)}")
        if fl.reset not in RESETS:
            raise NetImportError(f"layer {name}: reset {fl.reset!r} is not one of "
                                 f"{', '.join(RESETS)}")
        if fl.type != "sumpool2d" and fl.weight is None:
            raise NetImportError(f"layer {name}: a {fl.type} layer needs weights")
        if fl.type == "sumpool2d" and (fl.weight is not None or fl.bias is not None):
            raise NetImportError(f"layer {name}: a sumpool2d layer has no weights or bias")
        fl_named = FloatLayer(**{**fl.__dict__, "name": name})
        membrane_out = net.readout == "membrane" and i == n - 1
        q = quantize_layer_params(fl_named, weight_bits=weight_bits, state_bits=state_bits,
                                  per_channel=per_channel, exact=exact,
                                  force_layer_scale=membrane_out)
        num, frac = quantize_beta(fl.beta, beta_frac_bits, exact=exact, name=name)
        wb = None if fl.type == "sumpool2d" else int(weight_bits)
        weights = None if q["weights"] is None else q["weights"].astype(_int_dtype(weight_bits))
        bias = None if q["bias"] is None else q["bias"].astype(_int_dtype(state_bits))
        spatial = fl.type != "linear"
        layer = Layer(
            name=name, type=fl.type,
            in_shape=tuple(int(s) for s in fl.in_shape),
            out_shape=tuple(int(s) for s in fl.out_shape),
            kernel=int(fl.kernel) if spatial and fl.kernel is not None else None,
            stride=int(fl.stride) if spatial and fl.stride is not None else None,
            padding=int(fl.padding) if spatial and fl.padding is not None else None,
            weights=weights, bias=bias, weight_bits=wb, state_bits=int(state_bits),
            acc_bits=2, beta_num=num, beta_frac_bits=frac,
            threshold=q["threshold"], threshold_per_channel=q["threshold_per_channel"],
            reset=fl.reset, scale=float(q["scale"].max()))
        m = net.count_clip if i == 0 else 1
        try:
            layer.acc_bits = layer.required_acc_bits(m)
        except Exception as e:  # noqa: BLE001 - malformed arrays
            raise NetImportError(f"layer {name}: {e}") from None
        layers.append(layer)
        scales[name] = [float(s) for s in q["scale"]] if (per_channel and not exact) \
            else float(q["scale"][0])
    meta = dict(net.meta) if net.meta else {}
    meta["quantization"] = {
        "weight_bits": int(weight_bits), "state_bits": int(state_bits),
        "per_channel": bool(per_channel), "beta_frac_bits": beta_frac_bits,
        "exact": bool(exact), "scales": scales,
    }
    try:
        spec = InputSpec(shape=tuple(int(s) for s in net.input_shape), dt_us=int(net.dt_us),
                         timesteps=int(net.timesteps), count_clip=int(net.count_clip))
    except (TypeError, ValueError) as e:
        raise NetImportError(f"input settings: {e}") from None
    model = Model(input=spec, layers=layers, readout=net.readout, meta=meta)
    try:
        validate_model(model, "quantized net")
    except ModelError as e:
        raise NetImportError(str(e)) from None
    return model


def floatnet_from_model(model: Model) -> FloatNet:
    """The float network that ``quantize(net, exact=True)`` maps back onto ``model``.

    Weights, bias and thresholds are the model's integers as floats, ``beta`` is
    ``num / 2**frac_bits``. Widths are not part of a :class:`FloatNet`; pass the model's
    ``weight_bits``, ``state_bits`` and ``beta_frac_bits`` to :func:`quantize` to get
    the same model back.
    """
    layers = []
    for layer in model.layers:
        thr = layer.threshold.astype(np.float64)
        layers.append(FloatLayer(
            name=layer.name, type=layer.type, in_shape=tuple(layer.in_shape),
            out_shape=tuple(layer.out_shape), kernel=layer.kernel, stride=layer.stride,
            padding=layer.padding,
            weight=None if layer.weights is None else layer.weights.astype(np.float64),
            bias=None if layer.bias is None else layer.bias.astype(np.float64),
            beta=layer.beta_num / (1 << layer.beta_frac_bits),
            threshold=thr if layer.threshold_per_channel else float(thr[0]),
            reset=layer.reset))
    return FloatNet(input_shape=tuple(model.input.shape), layers=layers,
                    timesteps=model.input.timesteps, dt_us=model.input.dt_us,
                    count_clip=model.input.count_clip, readout=model.readout,
                    meta=dict(model.meta or {}))
