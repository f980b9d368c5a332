"""Hardware geometry shared by the generator (hw/), the cycle model (sim/cycles.py), the
cocotb models (sim/tb/) and the board protocol (boards/): the one copy of each rule.

Only plain Python and numpy: ``sim`` must not import Amaranth.

* token kinds of every event word (network input, layer events, the UART event word);
* tensor shapes as ``(C, H, W)``;
* lanes: how many output channels a neuron core updates per cycle, and the lane groups
  ``G`` of one output position (state-RAM word ``a = pos * G + g`` holds channels
  ``g * L .. g * L + L - 1``);
* the per-axis window of a convolution seen from the input side (which outputs one input
  coordinate reaches), from which the hardware's kernel-offset tables and the compiled
  reference's strip tables are derived;
* the sizing rule of a delay line (``hw.delay``): its slots and the events one slot holds;
* banks: a layer split by output column over ``B`` neuron cores (bank ``b`` holds the
  columns ``x = b, b + B, ...`` at local column ``x // B``), see :func:`banks_of`.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["SPIKE", "END_STEP", "END_SAMPLE", "RESERVED", "KIND_BITS", "MAX_DEFAULT_LANES",
           "MAX_LANES", "MAX_FIFO_DEPTH",
           "shape3", "default_lanes", "lanes_of", "lane_groups", "conv_out_size", "axis_range",
           "delay_slots", "delay_capacity", "MAX_BANKS", "banks_of", "bank_width",
           "bank_shape", "bank_layer"]

#: Token kinds, the 2-bit ``kind`` field of every event word.
SPIKE = 0
END_STEP = 1
END_SAMPLE = 2
RESERVED = 3
KIND_BITS = 2

#: The default lane count is every output channel, up to this many.
MAX_DEFAULT_LANES = 16

#: Limits of the hardware parameters a user may ask for (``--lanes``, ``--fifo-depth``;
#: docs/semantics.md, "Limits"): beyond them elaboration and the cycle model only grow
#: (a state-RAM word is ``lanes * state_bits`` wide, a FIFO holds ``fifo_depth`` words).
MAX_LANES = 256
MAX_FIFO_DEPTH = 4096
#: The most banks (neuron cores over interleaved output columns) a layer may ask for.
MAX_BANKS = 8


def shape3(shape):
    """``(C, H, W)`` of a tensor shape; a 1-D shape ``(N,)`` becomes ``(N, 1, 1)``.

    Raises
    ------
    ValueError
        The shape is neither 1-D nor 3-D.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return (shape[0], 1, 1)
    if len(shape) == 3:
        return shape
    raise ValueError(f"expected a (C, H, W) or (N,) shape, got {shape}")


def default_lanes(out_shape):
    """Default lane count of a layer with ``out_shape``: all output channels up to 16."""
    return max(1, min(shape3(out_shape)[0], MAX_DEFAULT_LANES))


def _positive_int(value):
    return (not isinstance(value, bool) and isinstance(value, (int, np.integer))
            and value >= 1)


def _per_layer(layers, value, what):
    """One entry per layer of a per-layer hardware parameter ``what``: a dict by layer
    name (missing: ``None``), a sequence in layer order, or one value for all."""
    if isinstance(value, dict):
        names = {layer.name for layer in layers}
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            raise ValueError(f"{what}: no layer named {', '.join(unknown)}")
        return [value.get(layer.name) for layer in layers]
    if isinstance(value, (list, tuple)):
        if len(value) != len(layers):
            raise ValueError(f"{what}: {len(value)} entries for {len(layers)} layers")
        return list(value)
    return [value] * len(layers)


def lanes_of(model, lanes=None):
    """Lanes of every layer of ``model``, the one rule of ``hw.network.Network(lanes=...)``
    and of the cycle model.

    Parameters
    ----------
    model : sim.model.Model
        Only ``model.layers`` (their ``name`` and ``out_shape``) is read.
    lanes : None, int, sequence or dict, optional
        ``None``: :func:`default_lanes` for every layer; an int: that many for every layer;
        a sequence: one entry per layer, in layer order; a dict ``{layer name: L}``: those
        layers, the others their default. An entry ``None`` means the default.

    Returns
    -------
    list of int
        ``L >= 1`` per layer.

    Raises
    ------
    ValueError
        An entry is not a positive integer (0 included: there is no "0 means default"),
        the sequence has not one entry per layer, or a dict key names no layer.
    """
    layers = model.layers
    entries = _per_layer(layers, lanes, "lanes")
    out = []
    for layer, L in zip(layers, entries):
        if L is None:
            out.append(default_lanes(layer.out_shape))
        elif _positive_int(L):
            out.append(int(L))
        else:
            raise ValueError(f"lanes of layer {layer.name}: {L!r} must be a positive integer")
    return out


def lane_groups(channels, lanes):
    """Lane groups ``G = ceil(channels / lanes)`` of one output position.

    Raises
    ------
    ValueError
        ``lanes`` is not a positive integer.
    """
    if not _positive_int(lanes):
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    return -(-int(channels) // int(lanes))


def conv_out_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis (floor division, as in torch)."""
    return (size + 2 * padding - kernel) // stride + 1


def axis_range(n_in, n_out, kernel, stride, padding):
    """Per input coordinate ``v < n_in``: the first and last output ``o`` it reaches.

    ``o`` is reached when ``o * stride - padding + k == v`` for some ``0 <= k < kernel``
    and ``0 <= o < n_out``; the kernel offset of output ``o`` is
    ``k = v + padding - o * stride``.

    Returns
    -------
    lo, hi : numpy.ndarray of int64, shape ``(n_in,)``
        The reached outputs are ``lo .. hi``; ``hi < lo`` when none is.
    """
    t = np.arange(int(n_in), dtype=np.int64) + padding
    hi = np.minimum(t // stride, n_out - 1)
    lo_num = t - kernel + 1
    lo = np.where(lo_num > 0, -(-lo_num // stride), 0)
    return lo, hi


def delay_slots(delay, taps):
    """Slots ``S = d + D`` of the delay line of a synapse with delay ``d >= 0`` and
    ``D >= 1`` taps: one per source step the line may hold at once (the ``D`` steps the
    consumer's current step reads, ``c-d-D+1 .. c-d``, and the ``d`` later ones the
    source may write before the consumer finishes, up to its current step ``c``).

    Raises
    ------
    ValueError
        ``delay < 0`` or ``taps < 1``.
    """
    if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
        raise ValueError(f"delay: {delay!r} must be an integer >= 0")
    if isinstance(taps, bool) or not isinstance(taps, (int, np.integer)) or taps < 1:
        raise ValueError(f"taps: {taps!r} must be an integer >= 1")
    return int(delay) + int(taps)


def delay_capacity(shape, m_src):
    """Events one slot of a delay line holds: ``N * m_src`` (every one of the
    ``N = C*H*W`` source neurons fires ``m_src`` times, the source's spike limit or the
    input's ``count_clip``, each count sent as that many events), the worst case.

    Raises
    ------
    ValueError
        ``m_src < 1`` or a bad shape.
    """
    if isinstance(m_src, bool) or not isinstance(m_src, (int, np.integer)) or m_src < 1:
        raise ValueError(f"m_src: {m_src!r} must be an integer >= 1")
    C, H, W = shape3(shape)
    return C * H * W * int(m_src)


def bank_width(wo, bank, banks):
    """Columns of bank ``bank`` of ``banks`` over ``wo`` output columns: the columns
    ``x = bank, bank + banks, ...`` (local column ``x // banks``)."""
    return len(range(bank, wo, banks))


def bank_shape(out_shape, bank, banks):
    """The ``(C, H, W_b)`` output shape of one bank of a layer of ``out_shape``."""
    C, H, W = shape3(out_shape)
    return (C, H, bank_width(W, bank, banks))


def bank_layer(layer, bank, banks):
    """The layer as bank ``bank`` of ``banks`` sees it: a copy with the same neurons over
    the output shape :func:`bank_shape` of that bank's columns."""
    view = copy.copy(layer)
    view.out_shape = bank_shape(layer.out_shape, bank, banks)
    return view


def banks_of(model, banks=None, *, membrane=None):
    """Banks of every layer of ``model``: the one rule of ``hw.network.Network(banks=...)``
    and of the cycle model.

    A layer with ``B > 1`` banks is ``B`` neuron cores, each with its own synapse engine
    and state RAM, bank ``b`` owning the output columns ``x = b, b + B, ...``; every
    bank takes every input event (an event reaches about ``1/B`` of its window in each),
    and their spikes are merged into one stream, the end-of-step and end-of-sample
    tokens once all banks have sent theirs (``hw.merge``). A window of ``n`` columns
    then costs ``ceil(n/B)`` cycles per row instead of ``n``, and the sweep is shared.

    Parameters
    ----------
    banks : None, int, sequence or dict, optional
        As ``lanes`` in :func:`lanes_of`; ``None`` (or a missing entry): 1. An int other
        than 1 applies to every layer that can be banked (the others keep 1).
    membrane : bool, optional
        The model's readout is ``membrane`` (default: from the model): its output layer
        cannot be banked (its readout taps one core).

    Only a layer whose one synapse is a same-step windowed kind (``conv2d``,
    ``sumpool2d``: ``Kind.geometry``) reading a spatial source can be banked, with
    ``1 <= B <= min(MAX_BANKS, W_out)``.

    Raises
    ------
    ValueError
        An entry is not a positive integer, is larger than allowed, names no layer, or
        asks for banks on a layer that cannot have them (naming the layer and why).
    """
    layers = model.layers
    membrane = model.readout == "membrane" if membrane is None else membrane

    def why_not(i, layer):
        syns = layer.synapses
        if len(syns) != 1:
            return f"it has {len(syns)} synapses (banks need one)"
        syn = syns[0]
        if not syn.kind.geometry:
            return f"its synapse is {syn.type} (banks need a windowed kind: conv2d, sumpool2d)"
        if syn.delay != 0 or syn.taps != 1:
            return "its synapse has a delay or taps"
        if membrane and i == len(layers) - 1:
            return "it is the output layer of a membrane readout"
        return None

    everywhere = _positive_int(banks)
    entries = _per_layer(layers, banks, "banks")
    out = []
    for i, (layer, B) in enumerate(zip(layers, entries)):
        if B is None:
            out.append(1)
            continue
        if not _positive_int(B):
            raise ValueError(f"banks of layer {layer.name}: {B!r} must be a positive integer")
        B = int(B)
        problem = why_not(i, layer) if B > 1 else None
        if problem is not None:
            if everywhere:
                out.append(1)
                continue
            raise ValueError(f"banks of layer {layer.name}: {B} banks, but {problem}")
        wo = shape3(layer.out_shape)[2]
        if B > min(MAX_BANKS, wo):
            raise ValueError(f"banks of layer {layer.name}: {B} is more than "
                             f"{min(MAX_BANKS, wo)} (MAX_BANKS {MAX_BANKS}, {wo} output columns)")
        out.append(B)
    return out
