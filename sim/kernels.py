"""The compiled, event-driven backend of the reference (numba).

:func:`run_numba` computes exactly the integers of the NumPy backend in
:mod:`sim.reference` (same :class:`~sim.reference.Result`: spike counts, states,
currents, overflow flags, scores, prediction, synaptic operation counts), only faster.
The whole ``T x layers`` loop runs inside one compiled call, so Python costs nothing per
step. Version-2 graphs run in the same kernel: any number of synapses per layer, from
the input or any layer, with delays and taps, multi-spike layers, ``v_min`` and
current-based layers.

How it works
------------
- The network is packed once (:class:`NumbaNetwork`) into flat arrays: one row of
  integer parameters per layer and one per synapse, all weights in one array (tap ``j``
  of a synapse at a fixed stride after tap 0), one state array (and one current array),
  lookup tables. States and weights are int32 when the widths allow it, else int64
  (arithmetic is int64 either way).
- Inside the kernel every layer keeps its state **channel-last** (``H, W, C``), so
  the innermost loop of every synaptic update runs over contiguous output channels.
- A synapse kind does not appear here by name: each kind's ``pack`` (:mod:`sim.kinds`)
  maps it onto one of three scatter *primitives*:

  * :data:`STRIP` (``conv2d``): weights by phase, ``(C_in, S, ceil(K/S), S, ceil(K/S),
    C_out)``; for one input pixel the taps of consecutive output columns are
    consecutive, so an input spike adds one contiguous strip of weights to one
    contiguous run of the state per output row it reaches; the output ranges come from
    per-row and per-column tables (``oy * S - P + ky == y``), no search and no division;
  * :data:`ROW` (``linear``): one row of ``N_out`` weights per input, rows in the
    source's channel-last order;
  * :data:`CHANNEL` (``sumpool2d``, ``identity``): the count times one weight per
    channel (ones for pooling) added at ``(y // K, x // K)``, same channel.

- Synaptic work is event-driven, as in the contract. A spike travels as one int64 key
  ``y << 42 | x << 21 | c`` plus its count. Tap ``j`` of a synapse with delay ``d``
  reads its source's spikes of step ``k - d - j``: the network input keeps every step;
  a layer read at the same step is read from its spike list of this step; a layer read
  later keeps its spike lists in a ring of ``min(T, max(d + D))`` steps.
- The neuron update is the rule of :func:`sim.reference.neuron_update` (and
  :func:`~sim.reference.current_update`), restated for one neuron: a branch-free loop
  that vectorizes for version-1 neurons (the common case), a general loop for
  multi-spike, ``v_min`` and current-based layers; then a compaction of the spikes.
- Recorded traces and scores are written in the contract's ``(C, H, W)`` order.
- Array indices are cast to unsigned, which keeps numba's negative-index wraparound
  out of the inner loops (it blocks vectorization).

Synaptic operations are counted as in the NumPy backend: per input spike and tap, its
count times (reached output positions x ``C_out``) for the strip and row primitives,
and its count per reached output for the channel primitive.

Compiled code is cached on disk (``cache=True``); the first call of a fresh checkout
compiles (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as U   # unsigned indices: no negative-index wraparound code

from .model import INPUT, Model, RESETS
from .reference import Result, check_binned, spike_dtype

__all__ = ["NumbaNetwork", "run_numba", "input_keys", "STRIP", "ROW", "CHANNEL"]

#: Scatter primitives (what a synapse kind's ``pack`` returns first).
STRIP = 0
ROW = 1
CHANNEL = 2

# -- one row of the per-synapse table ------------------------------------------------------
(_PRIM, _CIN, _HIN, _WIN, _COUT, _HOUT, _WOUT, _K, _S, _P, _WOFF, _VOFF, _TOFF, _SRC,
 _DELAY, _TAPS, _TAPW) = range(17)
_NSYN = 17
# -- one row of the per-layer table --------------------------------------------------------
(_LCOUT, _LHOUT, _LWOUT, _NOUT, _LVOFF, _SMIN, _SMAX, _BNUM, _BFRAC, _RESET, _SYN0, _SYN1,
 _LIMIT, _VMIN, _CUR, _CMIN, _CMAX, _CNUM, _CFRAC, _PLAIN, _HOFF, _HDEPTH, _HSLOT) = range(23)
_NLAYER = 23

#: reset codes, in the order of sim.model.RESETS
_SUBTRACT, _ZERO, _NONE = range(3)
_RESET_CODES = {name: code for code, name in enumerate(RESETS)}
assert RESETS[_SUBTRACT] == "subtract" and RESETS[_ZERO] == "zero"

# a spike travels between layers as one int64 key: y << 42 | x << 21 | c
_SHIFT_Y = 42
_SHIFT_X = 21
_MASK = (1 << 21) - 1

_JIT = dict(cache=True, nogil=True, error_model="numpy")


# -- synaptic accumulation (event-driven) -------------------------------------------------

@njit(inline="always", **_JIT)
def _decode(key):
    """``(y, x, c)`` of a spike key."""
    return key >> _SHIFT_Y, (key >> _SHIFT_X) & _MASK, key & _MASK


@njit(inline="always", **_JIT)
def _add_row_n(v, ab, w, wb, length, n):
    """``v[ab:ab + length] += w[wb:wb + length] * n`` (a plain loop: LLVM vectorizes it
    best; unsigned indices keep numba's negative-index wraparound out of it)."""
    if n == 1:
        for j in range(length):
            v[U(ab + j)] += w[U(wb + j)]
    else:
        for j in range(length):
            v[U(ab + j)] += w[U(wb + j)] * n


@njit(inline="always", **_JIT)
def _strip_scatter(v, w, woff, tab, m, keys, ns, a, b, counted):
    """Add the weights of input spikes ``a:b`` to a channel-last state (:data:`STRIP`).

    Weights are stored by phase: for one input pixel the taps of consecutive output
    columns are consecutive, and so are the rows of taps for consecutive output rows, so
    a spike adds one contiguous strip of weights to one contiguous run of the state per
    output row reached. ``tab`` gives, per input row (then per input column), the first
    and last output row reached and the offset of its first strip. ``counted``: the
    spikes carry counts ``ns``; otherwise each counts 1.
    """
    Co = m[_COUT]
    Wo = m[_WOUT]
    S = m[_S]
    voff = m[_VOFF]
    ty = m[_TOFF]
    tx = ty + 3 * m[_HIN]
    NT = (m[_K] + S - 1) // S
    ROWLEN = S * NT * Co             # one row of taps in the strip layout
    CH = S * NT * ROWLEN             # one input channel
    WoCo = Wo * Co
    ops = 0
    for e in range(a, b):
        y, x, c = _decode(keys[U(e)])
        n = ns[U(e)] if counted else 1
        iy = ty + 3 * y
        ix = tx + 3 * x
        oy0 = tab[U(iy)]
        oy1 = tab[U(iy + 1)]
        ox0 = tab[U(ix)]
        ox1 = tab[U(ix + 1)]
        if oy1 < oy0 or ox1 < ox0:
            continue
        ab = voff + oy0 * WoCo + ox0 * Co
        wb = woff + c * CH + tab[U(iy + 2)] + tab[U(ix + 2)]
        run = (ox1 - ox0 + 1) * Co
        for oy in range(oy0, oy1 + 1):
            _add_row_n(v, ab, w, wb, run, n)
            ab += WoCo
            wb += ROWLEN
        ops += (oy1 - oy0 + 1) * (ox1 - ox0 + 1) * Co * n
    return ops


@njit(inline="always", **_JIT)
def _row_scatter(v, w, woff, m, keys, ns, a, b, counted):
    """Add one weight row (``N_out`` contiguous weights) per input spike (:data:`ROW`)."""
    Co = m[_COUT]
    Cin = m[_CIN]
    Win = m[_WIN]
    voff = m[_VOFF]
    ops = 0
    for e in range(a, b):
        y, x, c = _decode(keys[U(e)])
        n = ns[U(e)] if counted else 1
        _add_row_n(v, voff, w, woff + ((y * Win + x) * Cin + c) * Co, Co, n)
        ops += Co * n
    return ops


@njit(inline="always", **_JIT)
def _channel_scatter(v, w, woff, tab, m, keys, ns, a, b, counted):
    """Each input spike adds its count times its channel's weight at
    ``(y // K, x // K)``, same channel, if that output exists (:data:`CHANNEL`)."""
    Co = m[_COUT]
    Wo = m[_WOUT]
    voff = m[_VOFF]
    ty = m[_TOFF]
    tx = ty + 3 * m[_HIN]
    ops = 0
    for e in range(a, b):
        y, x, c = _decode(keys[U(e)])
        n = ns[U(e)] if counted else 1
        oy = tab[U(ty + 3 * y)]
        ox = tab[U(tx + 3 * x)]
        if oy >= 0 and ox >= 0:
            v[U(voff + (oy * Wo + ox) * Co + c)] += w[U(woff + c)] * n
            ops += n
    return ops


@njit(inline="always", **_JIT)
def _scatter(v, w, woff, tab, m, keys, ns, a, b, counted):
    """One tap of one synapse: the primitive of its kind, specialised on ``counted``."""
    prim = m[_PRIM]
    if counted:
        if prim == STRIP:
            return _strip_scatter(v, w, woff, tab, m, keys, ns, a, b, True)
        if prim == ROW:
            return _row_scatter(v, w, woff, m, keys, ns, a, b, True)
        return _channel_scatter(v, w, woff, tab, m, keys, ns, a, b, True)
    if prim == STRIP:
        return _strip_scatter(v, w, woff, tab, m, keys, ns, a, b, False)
    if prim == ROW:
        return _row_scatter(v, w, woff, m, keys, ns, a, b, False)
    return _channel_scatter(v, w, woff, tab, m, keys, ns, a, b, False)


# -- the neuron update ----------------------------------------------------------------

@njit(inline="always", **_JIT)
def _update_plain(v, thr, bias, flags, nkey, lm, keys, cnts):
    """Steps 3-5 of the contract for every neuron of a layer with version-1 neurons
    (channel-last).

    ``thr`` and ``bias`` are per neuron (a layer that never fires has the threshold
    ``state_max + 1``). Writes the keys of the neurons that fire (from ``nkey``) to
    ``keys`` (and count 1 to ``cnts``) from ``lm[_LVOFF]`` on and returns
    ``(number of spiking neurons, spikes, overflow flag)``.
    """
    voff = lm[_LVOFF]
    end = voff + lm[_NOUT]
    smin = lm[_SMIN]
    smax = lm[_SMAX]
    num = lm[_BNUM]
    frac = lm[_BFRAC]
    sub = lm[_RESET] == _SUBTRACT
    zero = lm[_RESET] == _ZERO
    ovf = 0
    # branch-free, so that it vectorizes
    for i in range(voff, end):
        acc = v[U(i)] + bias[U(i)]
        u = min(max(acc, smin), smax)
        ovf |= u != acc
        th = thr[U(i)]
        s = u >= th
        nv = (u * num) >> frac
        nv = nv - th if (s & sub) else nv
        nv = 0 if (s & zero) else nv
        v[U(i)] = nv
        flags[U(i)] = s
    # compaction: always write, advance only on a spike
    nsp = voff
    for i in range(voff, end):
        keys[U(nsp)] = nkey[U(i)]
        cnts[U(nsp)] = 1
        nsp += flags[U(i)]
    return nsp - voff, nsp - voff, ovf != 0


@njit(inline="always", **_JIT)
def _update_general(v, cur, thr, bias, flags, nkey, lm, keys, cnts, scores, want_u):
    """Steps 2-5 of the contract for a layer with multi-spike, ``v_min`` or current-based
    neurons. With ``want_u`` the clamped ``u`` is written to ``scores`` (``(C, H, W)``
    order: the membrane readout's last step). Returns ``(number of spiking neurons,
    spikes (counts summed), overflow flag)``."""
    voff = lm[_LVOFF]
    end = voff + lm[_NOUT]
    smin = lm[_SMIN]
    smax = lm[_SMAX]
    num = lm[_BNUM]
    frac = lm[_BFRAC]
    reset = lm[_RESET]
    limit = lm[_LIMIT]
    vmin = lm[_VMIN]
    is_cur = lm[_CUR] != 0
    cmin = lm[_CMIN]
    cmax = lm[_CMAX]
    cnum = lm[_CNUM]
    cfrac = lm[_CFRAC]
    Co = lm[_LCOUT]
    HW = lm[_LHOUT] * lm[_LWOUT]
    ovf = False
    nsp = voff
    total = 0
    for i in range(voff, end):
        if is_cur:
            a = cur[U(i)] + bias[U(i)]
            i2 = min(max(a, cmin), cmax)
            ovf |= i2 != a
            cur[U(i)] = (i2 * cnum) >> cfrac
            acc = v[U(i)] + i2
        else:
            acc = v[U(i)] + bias[U(i)]
        u = min(max(acc, smin), smax)
        ovf |= u != acc
        u = max(u, vmin)
        if want_u:
            j = i - voff
            scores[U((j % Co) * HW + j // Co)] = u
        th = thr[U(i)]
        s = 0
        if u >= th:
            s = min(limit, u // th)
        nv = (u * num) >> frac
        if reset == _SUBTRACT:
            nv -= s * th
        elif reset == _ZERO and s > 0:
            nv = 0
        v[U(i)] = nv
        flags[U(i)] = s
        if s > 0:
            keys[U(nsp)] = nkey[U(i)]
            cnts[U(nsp)] = s
            nsp += 1
            total += s
    return nsp - voff, total, ovf


@njit(inline="always", **_JIT)
def _chw(key, Ho, Wo):
    """Flat ``(C, H, W)`` index inside the layer of a spike key."""
    y, x, c = _decode(key)
    return (c * Ho + y) * Wo + x


@njit(**_JIT)
def _run_kernel(lmeta, smeta, w, tab, thr, bias, nkey, ktab, v, cur, flags, in_ptr, in_src,
                in_n, T, membrane, record, rec_s, rec_v, rec_c, overflow, synops, spike_count,
                scores, keys, cnts, hist_keys, hist_cnts, hist_n, nsp):
    """All ``T`` steps of all layers. Every output array is filled in place."""
    L = lmeta.shape[0]
    # network input: flat (C, H, W) indices -> keys, in one pass
    in_keys = np.empty(in_src.shape[0], dtype=np.int64)
    for e in range(in_src.shape[0]):
        in_keys[U(e)] = ktab[U(in_src[U(e)])]
    for k in range(T):
        for li in range(L):
            lm = lmeta[li]
            is_cur = lm[_CUR] != 0
            ops = 0
            for si in range(lm[_SYN0], lm[_SYN1]):
                m = smeta[si]
                src = m[_SRC]
                d = m[_DELAY]
                for j in range(m[_TAPS]):
                    s = k - d - j
                    if s < 0:
                        break
                    woff = m[_WOFF] + j * m[_TAPW]
                    if src < 0:
                        a = in_ptr[U(s)]
                        b = in_ptr[U(s + 1)]
                        if is_cur:
                            ops += _scatter(cur, w, woff, tab, m, in_keys, in_n, a, b, True)
                        else:
                            ops += _scatter(v, w, woff, tab, m, in_keys, in_n, a, b, True)
                        continue
                    sm = lmeta[src]
                    counted = sm[_LIMIT] > 1
                    if d + j == 0:
                        a = sm[_LVOFF]
                        b = a + nsp[src]
                        if is_cur:
                            ops += _scatter(cur, w, woff, tab, m, keys, cnts, a, b, counted)
                        else:
                            ops += _scatter(v, w, woff, tab, m, keys, cnts, a, b, counted)
                    else:
                        slot = s % sm[_HDEPTH]
                        a = sm[_HOFF] + slot * sm[_NOUT]
                        b = a + hist_n[U(sm[_HSLOT] + slot)]
                        if is_cur:
                            ops += _scatter(cur, w, woff, tab, m, hist_keys, hist_cnts, a, b,
                                            counted)
                        else:
                            ops += _scatter(v, w, woff, tab, m, hist_keys, hist_cnts, a, b,
                                            counted)
            synops[li] += ops
            last = li == L - 1
            voff = lm[_LVOFF]
            n = lm[_NOUT]
            Co = lm[_LCOUT]
            Ho = lm[_LHOUT]
            Wo = lm[_LWOUT]
            HW = Ho * Wo
            want_u = last and membrane and k == T - 1
            if lm[_PLAIN] != 0:
                if want_u:
                    # the score is u (clamped, before leak) at the last step
                    smin = lm[_SMIN]
                    smax = lm[_SMAX]
                    for j in range(n):
                        u = min(max(v[U(voff + j)] + bias[U(voff + j)], smin), smax)
                        scores[U((j % Co) * HW + j // Co)] = u
                nfire, total, ovf = _update_plain(v, thr, bias, flags, nkey, lm, keys, cnts)
            else:
                nfire, total, ovf = _update_general(v, cur, thr, bias, flags, nkey, lm, keys,
                                                    cnts, scores, want_u)
            nsp[li] = nfire
            overflow[li, k] = ovf
            spike_count[li] += total
            if last and not membrane:
                for j in range(voff, voff + nfire):
                    scores[_chw(keys[U(j)], Ho, Wo)] += cnts[U(j)]
            if lm[_HOFF] >= 0:
                # keep this step's spikes for delayed readers
                slot = k % lm[_HDEPTH]
                h = lm[_HOFF] + slot * n
                for j in range(nfire):
                    hist_keys[U(h + j)] = keys[U(voff + j)]
                    hist_cnts[U(h + j)] = cnts[U(voff + j)]
                hist_n[U(lm[_HSLOT] + slot)] = nfire
            if record:
                # channel-last -> (C, H, W); every entry of the step is written
                j = voff
                for p in range(HW):
                    for c in range(Co):
                        rec_v[k, voff + c * HW + p] = v[U(j)]
                        rec_s[k, voff + c * HW + p] = flags[U(j)]
                        if is_cur:
                            rec_c[k, voff + c * HW + p] = cur[U(j)]
                        j += 1


# -- Python side ------------------------------------------------------------------------

def _spatial(shape):
    """``(C, H, W)`` of a layer's input or output (a flat vector is ``(N, 1, 1)``)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape
    return (int(np.prod(shape)), 1, 1)


def input_keys(src, shape):
    """Spike keys (``y << 42 | x << 21 | c``) of flat ``(C, H, W)`` input indices."""
    C, H, W = _spatial(shape)
    src = np.asarray(src, dtype=np.int64)
    y, x, c = (src // W) % H, src % W, src // (H * W)
    return (y << _SHIFT_Y) | (x << _SHIFT_X) | c


def _axis_table(n_in, n_out, K, S, P, stride):
    """Per input coordinate ``y`` (or ``x``): the first and last output coordinate
    reached (``o * S - P + k == y``) and the offset of the first tap in the strip
    layout (``stride`` elements per tap); an empty range is ``(1, 0)``."""
    NT = (K + S - 1) // S
    t = np.arange(n_in, dtype=np.int64) + P
    hi = np.minimum(t // S, n_out - 1)
    lo_num = t - K + 1
    lo = np.where(lo_num > 0, -(-lo_num // S), 0)
    r = t % S
    top = r + S * ((K - 1 - r) // S)             # the largest tap of phase r
    j0 = (top - (t - lo * S)) // S               # index of the first tap used
    off = (r * NT + j0) * stride
    empty = hi < lo
    lo, hi, off = np.where(empty, 1, lo), np.where(empty, 0, hi), np.where(empty, 0, off)
    return np.stack([lo, hi, off], axis=1).ravel()


def _channel_table(n_in, n_out, K):
    """Per input coordinate: the output ``v // K`` (or -1 outside), in the 3-entry rows
    of the strip tables."""
    o = np.arange(n_in, dtype=np.int64) // K
    o = np.where(o < n_out, o, -1)
    return np.stack([o, o, np.zeros_like(o)], axis=1).ravel()


def _tables(prim, K, S, P, in3, out3, stride_row):
    _, Hi, Wi = in3
    Co, Ho, Wo = out3
    if prim == STRIP:
        return np.concatenate([_axis_table(Hi, Ho, K, S, P, stride_row),
                               _axis_table(Wi, Wo, K, S, P, Co)])
    if prim == CHANNEL:
        return np.concatenate([_channel_table(Hi, Ho, K), _channel_table(Wi, Wo, K)])
    return np.zeros(0, dtype=np.int64)


def _narrow(model):
    """int32 states and weights are safe: every value the kernel stores (a stored state
    after a reset, a current, an accumulator) fits with a wide margin."""
    return all(lay.acc_bits <= 30 and lay.state_bits <= 29 and
               (lay.current is None or lay.current.state_bits <= 29) for lay in model.layers)


class NumbaNetwork:
    """A model packed for the compiled kernel (built once, run on many samples).

    Parameters
    ----------
    model : Model

    dtype : {None, numpy.int32, numpy.int64}
        Integer type of the states and weights inside the kernel. ``None`` picks int32
        when every layer has ``acc_bits <= 30`` and ``state_bits <= 29`` (and a current
        of at most 29 bits; then every value the kernel stores fits with a wide margin;
        arithmetic is done in int64 either way), else int64.

    Notes
    -----
    The packed arrays are copies: changing ``model`` afterwards does not change a
    ``NumbaNetwork`` built before.
    """

    def __init__(self, model: Model, dtype=None):
        self.model = model
        if dtype is None:
            dtype = np.int32 if _narrow(model) else np.int64
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            raise ValueError(f"dtype must be int32 or int64, not {self.dtype}")
        layers = model.layers
        L = len(layers)
        T = model.input.timesteps
        for name, shape in [(INPUT, model.input.shape)] + [
                (layer.name, layer.out_shape) for layer in layers]:
            if max(_spatial(shape)) > _MASK:
                raise ValueError(f"{name}: shape {tuple(shape)}: the compiled kernel supports "
                                 f"dimensions up to {_MASK}")
        index = {layer.name: i for i, layer in enumerate(layers)}
        # ring depth of every layer read later than the step it fires in
        depth = [0] * L
        for i, layer in enumerate(layers):
            for syn in layer.synapses:
                src = model.source_of(i, syn)
                if src != INPUT and syn.delay + syn.taps > 1:
                    s = index[src]
                    depth[s] = max(depth[s], min(T, syn.delay + syn.taps))
        lmeta = np.zeros((L, _NLAYER), dtype=np.int64)
        smeta = []
        weights, thr, bias, tabs, nkeys = [], [], [], [], []
        woff = voff = toff = hoff = hslot = 0
        membrane = model.readout == "membrane"
        for i, layer in enumerate(layers):
            Co, Ho, Wo = out3 = _spatial(layer.out_shape)
            row = lmeta[i]
            row[_LCOUT], row[_LHOUT], row[_LWOUT] = Co, Ho, Wo
            row[_NOUT] = Co * Ho * Wo
            row[_LVOFF] = voff
            row[_SMIN], row[_SMAX] = layer.state_min, layer.state_max
            row[_BNUM], row[_BFRAC] = layer.beta_num, layer.beta_frac_bits
            row[_RESET] = _RESET_CODES[layer.reset]
            row[_LIMIT] = layer.spike_limit
            row[_VMIN] = layer.state_min if layer.v_min is None else layer.v_min
            if layer.current is not None:
                cur = layer.current
                row[_CUR] = 1
                row[_CMIN], row[_CMAX] = cur.state_min, cur.state_max
                row[_CNUM], row[_CFRAC] = cur.beta_num, cur.beta_frac_bits
            row[_PLAIN] = int(layer.is_plain)
            row[_HOFF] = -1
            if depth[i]:
                row[_HOFF], row[_HDEPTH], row[_HSLOT] = hoff, depth[i], hslot
                hoff += depth[i] * row[_NOUT]
                hslot += depth[i]
            row[_SYN0] = len(smeta)
            for syn in layer.synapses:
                src = model.source_of(i, syn)
                in3 = _spatial(model.source_shape(src))
                m = np.zeros(_NSYN, dtype=np.int64)
                packed = [syn.kind.pack(syn, None if syn.weights is None else
                                        syn.tap_weights(j), in3, out3)
                          for j in range(syn.taps)]
                prim, K, S, P, _ = packed[0]
                wl = [np.ascontiguousarray(p[4], dtype=np.int64).ravel() for p in packed]
                NT = (K + S - 1) // S
                tab = _tables(prim, K, S, P, in3, out3, S * NT * Co)
                m[_PRIM] = prim
                m[_CIN], m[_HIN], m[_WIN] = in3
                m[_COUT], m[_HOUT], m[_WOUT] = out3
                m[_K], m[_S], m[_P] = K, S, P
                m[_WOFF], m[_VOFF], m[_TOFF] = woff, voff, toff
                m[_SRC] = -1 if src == INPUT else index[src]
                m[_DELAY], m[_TAPS], m[_TAPW] = syn.delay, syn.taps, wl[0].size
                smeta.append(m)
                weights.extend(wl)
                tabs.append(tab)
                woff += sum(x.size for x in wl)
                toff += tab.size
            row[_SYN1] = len(smeta)
            fire = not (membrane and i == L - 1)
            th = np.asarray(layer.threshold, dtype=np.int64).reshape(-1) * np.ones(Co, np.int64)
            if not fire:
                th = np.full(Co, layer.state_max + 1, dtype=np.int64)   # u never reaches it
            b = (np.zeros(Co, np.int64) if layer.bias is None
                 else layer.bias.astype(np.int64).reshape(Co))
            # per neuron, channel-last
            thr.append(np.tile(th, Ho * Wo))
            bias.append(np.tile(b, Ho * Wo))
            yy, xx, cc = np.meshgrid(np.arange(Ho), np.arange(Wo), np.arange(Co), indexing="ij")
            nkeys.append(((yy << _SHIFT_Y) | (xx << _SHIFT_X) | cc).astype(np.int64).ravel())
            voff += Co * Ho * Wo
        self.lmeta = lmeta
        self.smeta = np.stack(smeta)
        dt = self.dtype
        self.weights = (np.concatenate(weights) if woff else np.zeros(1, np.int64)).astype(dt)
        self.tab = np.concatenate(tabs) if toff else np.zeros(1, np.int64)
        self.thr = np.concatenate(thr).astype(dt)
        self.bias = np.concatenate(bias).astype(dt)
        self.nkey = np.concatenate(nkeys)        # the key of every neuron
        self.ktab = input_keys(np.arange(model.input.size), model.input.shape)
        self.n_neurons = voff
        self.n_history = max(1, hoff)
        self.n_slots = max(1, hslot)
        self.offsets = lmeta[:, _LVOFF].copy()
        self.has_current = any(layer.current is not None for layer in layers)

    def run(self, binned, record=True):
        """Run one binned sample; same :class:`~sim.reference.Result` as the NumPy backend."""
        model = self.model
        T = model.input.timesteps
        L = len(model.layers)
        check_binned(model, binned)
        in_src = np.ascontiguousarray(binned.src, dtype=np.int64)
        in_n = np.ascontiguousarray(binned.count, dtype=np.int64)
        in_ptr = np.ascontiguousarray(binned.step_ptr, dtype=np.int64)
        N = self.n_neurons
        v = np.zeros(N, dtype=self.dtype)
        cur = np.zeros(N if self.has_current else 1, dtype=self.dtype)
        keys = np.empty(N, dtype=np.int64)
        cnts = np.empty(N, dtype=np.int64)
        flags = np.empty(N, dtype=np.uint16)
        hist_keys = np.empty(self.n_history, dtype=np.int64)
        hist_cnts = np.empty(self.n_history, dtype=np.int64)
        hist_n = np.zeros(self.n_slots, dtype=np.int64)
        nsp = np.zeros(L, dtype=np.int64)
        if record:
            # the kernel writes every entry; counts above 255 only where a layer allows them
            wide = any(layer.spike_limit > 255 for layer in model.layers)
            rec_s = np.empty((T, N), dtype=np.uint16 if wide else np.uint8)
            rec_v = np.empty((T, N), dtype=np.int64)
            rec_c = np.zeros((T, N) if self.has_current else (1, 1), dtype=np.int64)
        else:
            rec_s = np.zeros((1, 1), dtype=np.uint8)
            rec_v = np.zeros((1, 1), dtype=np.int64)
            rec_c = np.zeros((1, 1), dtype=np.int64)
        overflow = np.zeros((L, T), dtype=np.bool_)
        synops = np.zeros(L, dtype=np.int64)
        spike_count = np.zeros(L, dtype=np.int64)
        scores = np.zeros(model.n_classes, dtype=np.int64)
        _run_kernel(self.lmeta, self.smeta, self.weights, self.tab, self.thr, self.bias,
                    self.nkey, self.ktab, v, cur, flags, in_ptr, in_src, in_n, T,
                    model.readout == "membrane", record, rec_s, rec_v, rec_c, overflow,
                    synops, spike_count, scores, keys, cnts, hist_keys, hist_cnts, hist_n, nsp)
        names = [layer.name for layer in model.layers]
        spikes, states, currents = {}, {}, {}
        if record:
            for layer, off in zip(model.layers, self.offsets):
                n = layer.n_out
                spikes[layer.name] = rec_s[:, off:off + n].reshape(
                    T, *layer.out_shape).astype(spike_dtype(layer), copy=False)
                states[layer.name] = rec_v[:, off:off + n].reshape(T, *layer.out_shape)
                if layer.current is not None:
                    currents[layer.name] = rec_c[:, off:off + n].reshape(T, *layer.out_shape)
        return Result(scores=scores, prediction=int(np.argmax(scores)),
                      overflow={nm: overflow[i] for i, nm in enumerate(names)},
                      synops={nm: int(synops[i]) for i, nm in enumerate(names)},
                      spike_count={nm: int(spike_count[i]) for i, nm in enumerate(names)},
                      spikes=spikes, states=states, input_spikes=binned.n_spikes,
                      currents=currents)


def run_numba(model: Model, binned, record=True, network=None, dtype=None):
    """Run ``model`` on one binned sample with the compiled kernel.

    Parameters
    ----------
    model : Model
    binned : BinnedEvents
    record : bool
        Keep per-step spikes and states (and currents) of every layer. ``False`` skips
        the trace writes (faster; scores, flags and counts are the same).
    network : NumbaNetwork, optional
        ``model`` already packed (saves the packing when one model runs many samples).
    dtype : optional
        Passed to :class:`NumbaNetwork` when ``network`` is not given.

    Returns
    -------
    Result
        The same integers as ``sim.reference.run(..., backend="numpy")``.
    """
    if network is None or network.model is not model:
        network = NumbaNetwork(model, dtype=dtype)
    return network.run(binned, record=record)
