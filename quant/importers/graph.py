"""Assembly of imported *graphs* into version-2 models (used by the graph importers).

An importer that reads a graph (NIR with branches, joins, recurrence and delays; sinabs;
snnTorch's recurrent and current-based neurons) describes it as populations of neurons
(:class:`GLayer`), each with the synapses (:class:`GSynapse`) that feed it, in float
units of the source framework and in evaluation order. :func:`graph_model` turns them
into a version-2 :class:`sim.model.Model` (docs/semantics.md, version 2):

``integer`` mode (every weight and bias is an integer after the neurons' input gains)
    nothing is rounded: weights, biases and thresholds are the integers given; a strict
    compare ``v > thr`` becomes ``v >= floor(thr) + 1`` (resets zero and none, and
    subtract when the source subtracts that integer, as :mod:`quant.nir_export` writes
    it), a non-strict ``v >= thr`` becomes ``v >= ceil(thr)``; with reset subtract and a
    strict compare on an integral threshold, the threshold stays (the contract then also
    fires where the membrane *equals* it; reported in ``meta.import.notes``); ``beta``
    must be ``num / 2**frac`` exactly.
``float`` mode (anything else)
    every layer gets one scale (state units per float unit) chosen from all the weights
    into it, its thresholds and bias (:func:`quant.ptq.layer_scale`), and weights,
    biases and thresholds are rounded to it. Layers are independent: a source delivers
    spike *counts*, whatever its own scale. A layer fed by a weightless ``sumpool2d``
    synapse keeps the scale of that synapse (pooling adds whole counts).

Neuron options of version 2: ``spike_limit`` (``None``: *never saturates*, i.e.
``state_max // min(threshold)``, the multi-spike neurons of sinabs), ``v_min`` (a number
in float units, or :data:`V_MIN_MINUS_THRESHOLD` for sinabs' ``min_v_mem = -threshold``),
``current_beta`` (current-based layers; the bias then enters the current) and
``membrane_only`` (a non-spiking integrator, allowed only as the output layer of a
``membrane`` readout: its threshold is ignored and it never resets).

``hints`` (written by :mod:`quant.nir_export` into node metadata) restore widths, leak
fractions, ``acc_bits`` and scales, so that a model exported and imported again is the
identical model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ir import NetImportError

__all__ = ["GSynapse", "GLayer", "graph_model", "V_MIN_MINUS_THRESHOLD", "is_integral"]

#: ``GLayer.v_min`` value meaning ``-threshold`` (sinabs' ``min_v_mem``), set after rounding.
V_MIN_MINUS_THRESHOLD = "-threshold"


def is_integral(a, tol=1e-9):
    a = np.asarray(a, dtype=np.float64)
    return bool(np.all(np.isfinite(a)) and np.all(np.abs(a - np.rint(a))
                                                  <= tol * np.maximum(1.0, np.abs(a))))


@dataclass
class GSynapse:
    """One edge into a population, in float units (the neuron's input gain applied).

    ``weight`` has the kind's weight shape (:data:`sim.registry.KINDS`), with a leading
    taps axis when ``taps > 1``; ``None`` for ``sumpool2d``, whose ``gain`` (``1 / D``
    for an average pool) multiplies the counts instead. ``origin`` names the source
    nodes for messages; ``hints`` may hold ``weight_bits`` and ``scale``.
    """
    source: str
    type: str
    weight: np.ndarray | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    delay: int = 0
    taps: int = 1
    gain: float = 1.0
    origin: str = ""
    hints: dict = field(default_factory=dict)


@dataclass
class GLayer:
    """One population in float units: thresholds per output channel (``(C,)``).

    ``gain`` is the neuron's input gain, for importers that multiply it into the
    synapses once all of them are known (:mod:`quant.importers.nir_graph`);
    :func:`graph_model` does not read it.
    """
    name: str
    out_shape: tuple
    synapses: list
    beta: float
    threshold: np.ndarray
    reset: str
    strict: bool = True
    bias: np.ndarray | None = None
    threshold_per_channel: bool = False
    subtract_is_next_integer: bool = False
    spike_limit: int | None = 1
    v_min: float | str | None = None
    current_beta: float | None = None
    membrane_only: bool = False
    gain: float = 1.0
    origin: str = ""
    hints: dict = field(default_factory=dict)


def _min_bits(a):
    m = int(np.abs(np.rint(a)).max()) if a is not None and np.size(a) else 1
    return max(2, max(m, 1).bit_length() + 1)


def _check_layer(gl, where):
    at = f"{where}: {gl.origin or gl.name}"
    if gl.reset not in ("subtract", "zero", "none"):
        raise NetImportError(f"{at}: reset {gl.reset!r} is not subtract, zero or none")
    for what, b in (("beta", gl.beta), ("current beta", gl.current_beta)):
        if b is not None and (not math.isfinite(b) or not 0 <= b <= 1):
            raise NetImportError(f"{at}: {what} {b!r} is outside 0..1")
    thr = np.asarray(gl.threshold, dtype=np.float64)
    if not gl.membrane_only and (not np.all(np.isfinite(thr)) or (thr <= 0).any()):
        raise NetImportError(f"{at}: threshold must be positive, got {float(thr.min()):g}")
    if not gl.synapses:
        raise NetImportError(f"{at}: a neuron node without an input")


def _integral(gl):
    for s in gl.synapses:
        if s.weight is not None and not is_integral(s.weight):
            return False
    if gl.bias is not None and not is_integral(gl.bias):
        return False
    if gl.reset == "subtract" and gl.strict and not gl.subtract_is_next_integer \
            and not gl.membrane_only and not is_integral(gl.threshold):
        return False
    return True


def _unit(gl):
    """The float value of one count through a weightless synapse (``None``: none)."""
    gains = {float(s.gain) for s in gl.synapses if s.weight is None}
    if len(gains) > 1:
        raise NetImportError(f"{gl.origin or gl.name}: pooling synapses with different "
                             f"scales ({', '.join(f'{g:g}' for g in sorted(gains))}) into one "
                             f"neuron node cannot share its accumulator")
    return gains.pop() if gains else None


def _thresholds(gl, scale, integer, ties):
    thr = np.asarray(gl.threshold, dtype=np.float64).reshape(-1) / scale
    if gl.membrane_only:
        return None
    if integer or any(s.weight is None for s in gl.synapses):
        near = np.where(np.abs(thr - np.rint(thr)) <= 1e-9 * np.maximum(1, np.abs(thr)),
                        np.rint(thr), thr)
        if not gl.strict:
            return np.ceil(near)
        if gl.reset == "subtract" and not gl.subtract_is_next_integer:
            if not is_integral(near):
                raise NetImportError(f"{gl.origin or gl.name}: threshold {float(near.max()):g} "
                                     f"(accumulator units) is not an integer; reset 'subtract' "
                                     f"subtracts it (integer mode)")
            ties.append(gl.name)
            return near
        return np.floor(near) + 1
    return np.maximum(1, np.rint(thr))


def graph_model(layers, *, input_shape, timesteps, dt_us=1000, count_clip=1,
                readout="spike_count", integer=None, weight_bits=None, state_bits=None,
                beta_frac_bits=None, where="graph", meta=None, notes=()):
    """Quantize populations in evaluation order into a validated version-2 model.

    Parameters
    ----------
    layers : list of GLayer
        In evaluation order; the last one is the output layer.
    integer : bool or None
        ``None``: integer mode when every weight and bias is an integer.
    weight_bits, state_bits, beta_frac_bits : int or None
        Override the hints and defaults (integer mode: the smallest exact weight width;
        float mode: 8 bits; states 16 bits).

    Returns
    -------
    model : sim.model.Model
        ``meta.import`` records the mode and ``notes``.
    """
    from sim.model import MAX_SPIKE_LIMIT, Current, InputSpec, Layer, Model, Synapse, \
        validate_model

    from ..ptq import layer_scale, quantize_beta
    for gl in layers:
        _check_layer(gl, where)
    auto = integer is None
    if auto:
        integer = all(_integral(gl) for gl in layers)
    notes = list(notes)
    ties = []
    out = []
    for gl in layers:
        at = f"{where}: {gl.origin or gl.name}"
        sb = int(state_bits or gl.hints.get("state_bits") or 16)
        state_max = (1 << (sb - 1)) - 1
        unit = _unit(gl)
        if integer:
            for s in gl.synapses:
                if s.weight is not None and not is_integral(s.weight):
                    bad = s.weight.flat[int(np.argmax(np.abs(s.weight - np.rint(s.weight))))]
                    raise NetImportError(f"{where}: {s.origin or gl.name}: weight {bad:g} is "
                                         f"not an integer (integer mode)")
            if gl.bias is not None and not is_integral(gl.bias):
                raise NetImportError(f"{at}: bias is not an integer (integer mode)")
            scale = 1.0 if unit is None else unit
            if unit is not None and unit != 1.0:
                notes.append(f"{gl.name}: pooling divides by {1 / unit:g}; threshold, bias and "
                             f"other weights x{1 / unit:g}")
        elif unit is not None:
            scale = unit
        else:
            wb = int(weight_bits or 8)
            ws = [np.abs(s.weight).reshape(-1) for s in gl.synapses if s.weight is not None]
            w = np.concatenate(ws) if ws else np.zeros(1)
            thr = np.asarray(gl.threshold, dtype=np.float64).reshape(-1)
            scale = float(layer_scale(w.reshape(1, -1), np.array([thr.max()]),
                                      None if gl.bias is None else
                                      np.array([np.abs(gl.bias).max()]),
                                      weight_bits=wb, state_bits=sb)[0])
            if not scale > 0:
                scale = 1.0
        thr = _thresholds(gl, scale, integer, ties)
        synapses = []
        for s in gl.synapses:
            w = wbits = None
            if s.weight is not None:
                w = np.rint(np.asarray(s.weight, dtype=np.float64) / scale).astype(np.int64)
                if weight_bits:
                    wbits = int(weight_bits)
                elif s.hints.get("weight_bits") is not None:
                    wbits = max(int(s.hints["weight_bits"]), _min_bits(w))
                else:
                    wbits = _min_bits(w) if integer else 8
                lim = (1 << (wbits - 1)) - 1
                if np.abs(w).max(initial=0) > lim:
                    raise NetImportError(f"{where}: {s.origin or gl.name}: a weight of magnitude "
                                         f"{int(np.abs(w).max())} does not fit {wbits} bits")
            elif integer and not is_integral(s.gain / scale):
                raise NetImportError(f"{where}: {s.origin}: pooling gain {s.gain:g} is not a "
                                     f"whole multiple of the layer's unit")
            sc = s.hints.get("scale", None if integer else scale)
            synapses.append(Synapse(source=s.source, type=s.type, kernel=s.kernel,
                                    stride=s.stride, padding=s.padding, weights=w,
                                    weight_bits=wbits, delay=int(s.delay), taps=int(s.taps),
                                    scale=None if sc is None else float(sc)))
        bias = None
        if gl.bias is not None and np.any(gl.bias):
            bias = np.rint(np.asarray(gl.bias, dtype=np.float64) / scale).astype(np.int64)
        elif gl.hints.get("has_bias"):          # an all-zero bias, kept as written
            bias = np.zeros(int(gl.out_shape[0]), dtype=np.int64)
        frac = beta_frac_bits if beta_frac_bits is not None else gl.hints.get("beta_frac_bits")
        num, f = quantize_beta(gl.beta, frac, exact=integer, name=gl.name)
        current = None
        if gl.current_beta is not None:
            cf = gl.hints.get("current_beta_frac_bits")
            cnum, cfr = quantize_beta(gl.current_beta, cf, exact=integer, name=gl.name)
            current = Current(beta_num=cnum, beta_frac_bits=cfr,
                              state_bits=int(gl.hints.get("current_state_bits") or sb))
        c = int(gl.out_shape[0])
        reset = gl.reset
        if gl.membrane_only:
            thr_i = np.full(c, state_max, dtype=np.int64)
            pc = False
        else:
            thr_i = np.broadcast_to(thr, (c,)).astype(np.int64)
            if thr_i.max() > state_max:
                raise NetImportError(f"{at}: threshold {int(thr_i.max())} does not fit "
                                     f"{sb}-bit states")
            pc = bool(gl.threshold_per_channel) or len(set(thr_i.tolist())) > 1
        limit = gl.spike_limit
        if limit is None:
            limit = max(1, state_max // int(thr_i.min()))
            if limit > MAX_SPIKE_LIMIT:
                # fewer state bits, so that the state range can never exceed the limit
                while sb > 2 and state_max // int(thr_i.min()) > MAX_SPIKE_LIMIT:
                    sb -= 1
                    state_max = (1 << (sb - 1)) - 1
                limit = max(1, state_max // int(thr_i.min()))
                notes.append(f"{gl.name}: multi-spike with threshold {int(thr_i.min())}: "
                             f"{sb}-bit states so that spike_limit {limit} never saturates")
        v_min = gl.v_min
        if isinstance(v_min, str):
            if len(set(thr_i.tolist())) > 1:
                raise NetImportError(f"{at}: v_min = -threshold needs one threshold per layer, "
                                     f"got {sorted(set(thr_i.tolist()))}")
            v_min = -int(thr_i[0])
        elif v_min is not None:
            v_min = int(math.floor(float(v_min) / scale + 1e-9))
        if v_min is not None and v_min < -(state_max + 1):
            v_min = None
        out.append(Layer(name=gl.name, out_shape=tuple(int(x) for x in gl.out_shape),
                         synapses=synapses, bias=bias, state_bits=sb, acc_bits=62,
                         beta_num=num, beta_frac_bits=f, threshold=thr_i.copy(),
                         threshold_per_channel=pc, reset=reset, spike_limit=int(limit),
                         v_min=v_min, current=current))
    if integer:
        notes.append("integer mode: strict compares 'v > thr' became 'v >= floor(thr)+1'; "
                     "non-strict 'v >= thr' became 'v >= ceil(thr)'")
    else:
        notes.append("float mode: one scale per layer (weights, bias and thresholds rounded "
                     "to it)")
    if ties:
        notes.append("reset subtract in " + ", ".join(ties) + ": the contract compares "
                     "'v >= thr' where the source compares 'v > thr'; spikes differ only when "
                     "a membrane equals the threshold exactly")
    m = dict(meta or {})
    imp = dict(m.get("import", {}))
    imp["mode"] = "integer" if integer else "float"
    imp["notes"] = notes
    m["import"] = imp
    model = Model(input=InputSpec(shape=tuple(int(s) for s in input_shape), dt_us=int(dt_us),
                                  timesteps=int(timesteps), count_clip=int(count_clip)),
                  layers=out, readout=readout, meta=m)
    for i, (layer, gl) in enumerate(zip(out, layers)):
        need = model.required_acc_bits(i)
        hint = gl.hints.get("acc_bits")
        layer.acc_bits = max(int(hint), need) if hint is not None else need
    try:
        return validate_model(model, where)
    except ValueError as e:
        raise NetImportError(str(e)) from None
