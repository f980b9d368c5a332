"""The compiled, event-driven backend of the reference (numba).

:func:`run_numba` computes exactly the integers of the NumPy backend in
:mod:`sim.reference` (same :class:`~sim.reference.Result`: spikes, states, overflow
flags, scores, prediction, synaptic operation counts), only faster. The whole
``T x layers`` loop runs inside one compiled call, so Python costs nothing per step.

How it works
------------
- The network is packed once (:class:`NumbaNetwork`) into flat arrays: one row of
  integer parameters per layer, all weights in one array, one state array, lookup
  tables. States and weights are int32 when the layer widths allow it, else int64
  (arithmetic is int64 either way).
- Inside the kernel every layer keeps its state **channel-last** (``H, W, C``), so
  the innermost loop of every synaptic update runs over contiguous output channels.
  Linear weights are ``(N_in, N_out)`` with rows in the producer's channel-last order.
  Conv weights are stored by phase, ``(C_in, S, ceil(K/S), S, ceil(K/S), C_out)``:
  for one input pixel the taps of consecutive output columns are consecutive, so an
  input spike adds one contiguous strip of weights to one contiguous run of the state
  per output row it reaches.
- Synaptic work is event-driven, as in the contract: an input spike at ``(c, y, x)``
  visits only the output positions whose receptive field holds it
  (``oy * S - P + ky == y``; the ranges come from per-row and per-column tables, no
  search and no division), a linear layer adds one weight row, a sum-pool adds the
  count at ``(y // K, x // K)``.
- The neuron update (clamp with overflow flag, ``u >= threshold``, reset
  subtract/zero/none, leak ``(u * num) >> frac_bits`` with an arithmetic shift) is the
  rule of :func:`sim.reference.neuron_update`, restated for one neuron as a
  branch-free loop that vectorizes, followed by a compaction of the spikes.
- A spike travels to the next layer as one int64 key ``y << 42 | x << 21 | c``;
  recorded traces and scores are written in the contract's ``(C, H, W)`` order.
- Array indices are cast to unsigned, which keeps numba's negative-index wraparound
  out of the inner loops (it blocks vectorization).

Synaptic operations are counted as in the NumPy backend: per input spike, its count
times (reached output positions x ``C_out``) for conv and linear layers, and one per
reached output for pooling.

Compiled code is cached on disk (``cache=True``); the first call of a fresh checkout
compiles (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as U   # unsigned indices: no negative-index wraparound code

from .geometry import axis_range
from .model import Model
from .reference import Result

__all__ = ["NumbaNetwork", "NumbaLayer", "run_numba", "input_keys"]

# -- layout of one row of the per-layer parameter table ----------------------------------
(_TYPE, _CIN, _HIN, _WIN, _COUT, _HOUT, _WOUT, _K, _S, _P, _WOFF, _NOUT, _VOFF, _TOFF,
 _SMIN, _SMAX, _BNUM, _BFRAC, _RESET) = range(19)
_NMETA = 19

_TYPES = {"conv2d": 0, "linear": 1, "sumpool2d": 2}
_RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}

# a spike travels between layers as one int64 key: y << 42 | x << 21 | c
_SHIFT_Y = 42
_SHIFT_X = 21
_MASK = (1 << 21) - 1

_JIT = dict(cache=True, nogil=True, error_model="numpy")


# -- synaptic accumulation (event-driven) -------------------------------------------------

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
def _conv_scatter(v, w, tab, m, keys, ns, a, b, counted):
    """Add the weights of input spikes ``a:b`` to a channel-last conv state.

    Weights are stored by phase (:func:`_conv_strips`): for one input pixel the taps of
    consecutive output columns are consecutive, and so are the rows of taps for
    consecutive output rows, so a spike adds one contiguous strip of weights to one
    contiguous run of the state per output row reached. ``tab`` gives, per input row
    (then per input column), the first and last output row reached and the offset of
    its first strip. ``counted``: the spikes carry counts ``ns`` (network input);
    otherwise each counts 1.
    """
    Co = m[_COUT]
    Wo = m[_WOUT]
    S = m[_S]
    voff = m[_VOFF]
    woff = m[_WOFF]
    ty = m[_TOFF]
    tx = ty + 3 * m[_HIN]
    NT = (m[_K] + S - 1) // S
    ROW = S * NT * Co                # one row of taps in the strip layout
    CH = S * NT * ROW                # one input channel
    WoCo = Wo * Co
    ops = 0
    for e in range(a, b):
        key = keys[U(e)]
        n = ns[U(e)] if counted else 1
        y = key >> _SHIFT_Y
        x = (key >> _SHIFT_X) & _MASK
        c = key & _MASK
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
            wb += ROW
        ops += (oy1 - oy0 + 1) * (ox1 - ox0 + 1) * Co * n
    return ops


@njit(inline="always", **_JIT)
def _linear_scatter(v, w, m, keys, ns, a, b, counted):
    """Add one weight row (``N_out`` contiguous weights) per input spike."""
    Co = m[_COUT]
    Cin = m[_CIN]
    Win = m[_WIN]
    voff = m[_VOFF]
    woff = m[_WOFF]
    ops = 0
    for e in range(a, b):
        key = keys[U(e)]
        n = ns[U(e)] if counted else 1
        y = key >> _SHIFT_Y
        x = (key >> _SHIFT_X) & _MASK
        c = key & _MASK
        _add_row_n(v, voff, w, woff + ((y * Win + x) * Cin + c) * Co, Co, n)
        ops += Co * n
    return ops


@njit(inline="always", **_JIT)
def _pool_scatter(v, tab, m, keys, ns, a, b, counted):
    """Sum-pool: each input spike adds its count at ``(y // K, x // K)`` if that exists."""
    Co = m[_COUT]
    Wo = m[_WOUT]
    voff = m[_VOFF]
    ty = m[_TOFF]
    tx = ty + 3 * m[_HIN]
    ops = 0
    for e in range(a, b):
        key = keys[U(e)]
        n = ns[U(e)] if counted else 1
        y = key >> _SHIFT_Y
        x = (key >> _SHIFT_X) & _MASK
        c = key & _MASK
        oy = tab[U(ty + 3 * y)]
        ox = tab[U(tx + 3 * x)]
        if oy >= 0 and ox >= 0:
            v[U(voff + (oy * Wo + ox) * Co + c)] += n
            ops += n
    return ops


# -- the neuron update ----------------------------------------------------------------

@njit(inline="always", **_JIT)
def _update(v, thr, bias, flags, nkey, m, keys):
    """Steps 3-5 of the contract for every neuron of one layer (channel-last).

    ``thr`` and ``bias`` are per neuron (a layer that never fires has the threshold
    ``state_max + 1``). Writes the keys of the neurons that fire (from ``nkey``) to
    ``keys`` from ``m[_VOFF]`` on and returns ``(number of spikes, overflow flag)``.
    """
    voff = m[_VOFF]
    end = voff + m[_NOUT]
    smin = m[_SMIN]
    smax = m[_SMAX]
    num = m[_BNUM]
    frac = m[_BFRAC]
    sub = m[_RESET] == 0
    zero = m[_RESET] == 1
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
        nsp += flags[U(i)]
    return nsp - voff, ovf != 0


@njit(inline="always", **_JIT)
def _chw(key, m):
    """Flat ``(C, H, W)`` index inside the layer of a spike key."""
    y = key >> _SHIFT_Y
    x = (key >> _SHIFT_X) & _MASK
    c = key & _MASK
    Wo = m[_WOUT]
    return (c * m[_HOUT] + y) * Wo + x


@njit(**_JIT)
def _run_kernel(meta, w, tab, thr, bias, nkey, ktab, v, flags, in_ptr, in_src, in_n, T,
                membrane, record, rec_s, rec_v, overflow, synops, spike_count, scores, keys):
    """All ``T`` steps of all layers. Every output array is filled in place."""
    L = meta.shape[0]
    nprev = 0
    # network input: flat (C, H, W) indices -> keys, in one pass
    in_keys = np.empty(in_src.shape[0], dtype=np.int64)
    for e in range(in_src.shape[0]):
        in_keys[U(e)] = ktab[U(in_src[U(e)])]
    for k in range(T):
        for li in range(L):
            m = meta[li]
            typ = m[_TYPE]
            if li == 0:
                # network input, with counts
                a = in_ptr[U(k)]
                b = in_ptr[U(k + 1)]
                if typ == 0:
                    ops = _conv_scatter(v, w, tab, m, in_keys, in_n, a, b, True)
                elif typ == 1:
                    ops = _linear_scatter(v, w, m, in_keys, in_n, a, b, True)
                else:
                    ops = _pool_scatter(v, tab, m, in_keys, in_n, a, b, True)
            else:
                # spikes of the layer before, as keys, count 1
                a = meta[li - 1, _VOFF]
                b = a + nprev
                if typ == 0:
                    ops = _conv_scatter(v, w, tab, m, keys, in_n, a, b, False)
                elif typ == 1:
                    ops = _linear_scatter(v, w, m, keys, in_n, a, b, False)
                else:
                    ops = _pool_scatter(v, tab, m, keys, in_n, a, b, False)
            synops[li] += ops
            last = li == L - 1
            voff = m[_VOFF]
            n = m[_NOUT]
            if last and membrane and k == T - 1:
                # the score is u (clamped, before leak) at the last step
                Co = m[_COUT]
                HW = m[_HOUT] * m[_WOUT]
                smin = m[_SMIN]
                smax = m[_SMAX]
                for j in range(n):
                    u = min(max(v[U(voff + j)] + bias[U(voff + j)], smin), smax)
                    scores[U((j % Co) * HW + j // Co)] = u
            nsp, ovf = _update(v, thr, bias, flags, nkey, m, keys)
            overflow[li, k] = ovf
            spike_count[li] += nsp
            nprev = nsp
            if last and not membrane:
                for j in range(voff, voff + nsp):
                    scores[_chw(keys[U(j)], m)] += 1
            if record:
                Co = m[_COUT]
                HW = m[_HOUT] * m[_WOUT]
                # channel-last -> (C, H, W); every entry of the step is written
                j = voff
                for p in range(HW):
                    for c in range(Co):
                        rec_v[k, voff + c * HW + p] = v[U(j)]
                        rec_s[k, voff + c * HW + p] = flags[U(j)]
                        j += 1


@njit(**_JIT)
def _accumulate_chw(acc, w, typ, C, H, W, Co, Ho, Wo, K, S, P, src, count):
    """Event-driven conv or pool accumulation in ``(C, H, W)`` order (one layer)."""
    ops = 0
    for e in range(src.shape[0]):
        s = src[e]
        n = count[e]
        c = s // (H * W)
        y = (s // W) % H
        x = s % W
        if typ == 2:
            oy = y // K
            ox = x // K
            if oy < Ho and ox < Wo:
                acc[(c * Ho + oy) * Wo + ox] += n
                ops += n
            continue
        for ky in range(K):
            ny = y + P - ky
            if ny < 0 or ny % S != 0 or ny // S >= Ho:
                continue
            oy = ny // S
            for kx in range(K):
                nx = x + P - kx
                if nx < 0 or nx % S != 0 or nx // S >= Wo:
                    continue
                ox = nx // S
                for co in range(Co):
                    acc[(co * Ho + oy) * Wo + ox] += w[co, c, ky, kx] * n
                ops += Co * n
    return ops


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
    lo, hi = axis_range(n_in, n_out, K, S, P)
    t = np.arange(n_in, dtype=np.int64) + P
    r = t % S
    top = r + S * ((K - 1 - r) // S)             # the largest tap of phase r
    j0 = (top - (t - lo * S)) // S               # index of the first tap used
    off = (r * NT + j0) * stride
    empty = hi < lo
    lo, hi, off = np.where(empty, 1, lo), np.where(empty, 0, hi), np.where(empty, 0, off)
    return np.stack([lo, hi, off], axis=1).ravel()


def _conv_strips(weights, S):
    """``(C_out, C_in, K, K)`` -> ``(C_in, S, NT, S, NT, C_out)`` with ``NT = ceil(K / S)``:
    entry ``(c, ry, jy, rx, jx)`` holds tap ``(top(ry) - S * jy, top(rx) - S * jx)``,
    ``top(r)`` being the largest tap ``= r (mod S)``; zeros where no tap exists."""
    Co, Ci, K, _ = weights.shape
    NT = (K + S - 1) // S
    w = np.transpose(weights.astype(np.int64), (1, 2, 3, 0))        # (C_in, K, K, C_out)
    taps = np.full((S, NT), -1, dtype=np.int64)
    for r in range(min(S, K)):
        top = r + S * ((K - 1 - r) // S)
        for j in range(top // S + 1):
            taps[r, j] = top - S * j
    out = np.zeros((Ci, S, NT, S, NT, Co), dtype=np.int64)
    for ry in range(S):
        for jy in range(NT):
            for rx in range(S):
                for jx in range(NT):
                    ky, kx = taps[ry, jy], taps[rx, jx]
                    if ky >= 0 and kx >= 0:
                        out[:, ry, jy, rx, jx, :] = w[:, ky, kx, :]
    return out


def _pool_table(n_in, n_out, K):
    o = np.arange(n_in, dtype=np.int64) // K
    o = np.where(o < n_out, o, -1)
    return np.stack([o, o, np.zeros_like(o)], axis=1).ravel()


class NumbaNetwork:
    """A model packed for the compiled kernel (built once, run on many samples).

    Parameters
    ----------
    model : Model

    dtype : {None, numpy.int32, numpy.int64}
        Integer type of the states and weights inside the kernel. ``None`` picks int32
        when every layer has ``acc_bits <= 30`` and ``state_bits <= 29`` (then every
        value the kernel stores, a stored state after a reset included, fits with a
        wide margin; arithmetic is done in int64 either way), else int64.

    Notes
    -----
    The packed arrays are copies: changing ``model`` afterwards does not change a
    ``NumbaNetwork`` built before.
    """

    def __init__(self, model: Model, dtype=None):
        self.model = model
        if dtype is None:
            narrow = all(lay.acc_bits <= 30 and lay.state_bits <= 29 for lay in model.layers)
            dtype = np.int32 if narrow else np.int64
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            raise ValueError(f"dtype must be int32 or int64, not {self.dtype}")
        layers = model.layers
        L = len(layers)
        for name, shape in [("input", model.input.shape)] + [
                (layer.name, layer.out_shape) for layer in layers]:
            if max(_spatial(shape)) > _MASK:
                raise ValueError(f"{name}: shape {tuple(shape)}: the compiled kernel supports "
                                 f"dimensions up to {_MASK}")
        meta = np.zeros((L, _NMETA), dtype=np.int64)
        weights, thr, bias, tabs, nkeys = [], [], [], [], []
        woff = voff = toff = 0
        prev = _spatial(model.input.shape)
        for i, layer in enumerate(layers):
            Ci, Hi, Wi = prev
            Co, Ho, Wo = _spatial(layer.out_shape)
            row = meta[i]
            row[_TYPE] = _TYPES[layer.type]
            row[_CIN], row[_HIN], row[_WIN] = Ci, Hi, Wi
            row[_COUT], row[_HOUT], row[_WOUT] = Co, Ho, Wo
            row[_NOUT] = Co * Ho * Wo
            if layer.type == "conv2d":
                K, S, P = layer.kernel, layer.stride, layer.padding
                wl = _conv_strips(layer.weights, S)
                NT = (K + S - 1) // S
                tab = np.concatenate([_axis_table(Hi, Ho, K, S, P, S * NT * Co),
                                      _axis_table(Wi, Wo, K, S, P, Co)])
            elif layer.type == "linear":
                K, S, P = 1, 1, 0
                # (N_out, N_in) with N_in in the producer's (C, H, W) order
                # -> rows in the producer's (H, W, C) order, columns N_out
                wl = layer.weights.astype(np.int64).T.reshape(Ci, Hi, Wi, Co)
                wl = np.transpose(wl, (1, 2, 0, 3))
                tab = np.zeros(0, dtype=np.int64)
            else:
                K = S = layer.kernel
                P = 0
                wl = np.zeros(0, dtype=np.int64)
                tab = np.concatenate([_pool_table(Hi, Ho, K), _pool_table(Wi, Wo, K)])
            row[_K], row[_S], row[_P] = K, S, P
            row[_WOFF] = woff
            row[_VOFF] = voff
            row[_TOFF] = toff
            row[_SMIN], row[_SMAX] = layer.state_min, layer.state_max
            row[_BNUM], row[_BFRAC] = layer.beta_num, layer.beta_frac_bits
            row[_RESET] = _RESET_CODES[layer.reset]
            fire = not (model.readout == "membrane" and i == L - 1)
            th = np.asarray(layer.threshold, dtype=np.int64).reshape(-1) * np.ones(Co, np.int64)
            if not fire:
                th = np.full(Co, layer.state_max + 1, dtype=np.int64)   # u never reaches it
            b = (np.zeros(Co, np.int64) if layer.bias is None
                 else layer.bias.astype(np.int64).reshape(Co))
            # per neuron, channel-last
            thr.append(np.tile(th, Ho * Wo))
            bias.append(np.tile(b, Ho * Wo))
            weights.append(np.ascontiguousarray(wl).ravel())
            yy, xx, cc = np.meshgrid(np.arange(Ho), np.arange(Wo), np.arange(Co), indexing="ij")
            nkeys.append(((yy << _SHIFT_Y) | (xx << _SHIFT_X) | cc).astype(np.int64).ravel())
            tabs.append(tab)
            woff += wl.size
            voff += Co * Ho * Wo
            toff += tab.size
            prev = (Co, Ho, Wo)
        self.meta = meta
        dt = self.dtype
        self.weights = (np.concatenate(weights) if woff else np.zeros(1, np.int64)).astype(dt)
        self.tab = np.concatenate(tabs) if toff else np.zeros(1, np.int64)
        self.thr = np.concatenate(thr).astype(dt)
        self.bias = np.concatenate(bias).astype(dt)
        self.nkey = np.concatenate(nkeys)        # the key of every neuron
        self.ktab = input_keys(np.arange(model.input.size), model.input.shape)
        self.n_neurons = voff
        self.offsets = meta[:, _VOFF].copy()

    def run(self, binned, record=True):
        """Run one binned sample; same :class:`~sim.reference.Result` as the NumPy backend."""
        model = self.model
        T = model.input.timesteps
        L = len(model.layers)
        if tuple(binned.shape) != tuple(model.input.shape):
            raise ValueError(f"events have shape {binned.shape}, the model input is "
                             f"{model.input.shape}")
        if binned.timesteps != T:
            raise ValueError(f"events are binned into {binned.timesteps} steps, the model "
                             f"has {T}")
        in_src = np.ascontiguousarray(binned.src, dtype=np.int64)
        in_n = np.ascontiguousarray(binned.count, dtype=np.int64)
        in_ptr = np.ascontiguousarray(binned.step_ptr, dtype=np.int64)
        N = self.n_neurons
        v = np.zeros(N, dtype=self.dtype)
        keys = np.empty(N, dtype=np.int64)
        flags = np.empty(N, dtype=np.uint8)
        if record:
            rec_s = np.empty((T, N), dtype=np.uint8)      # the kernel writes every entry
            rec_v = np.empty((T, N), dtype=np.int64)
        else:
            rec_s = np.zeros((1, 1), dtype=np.uint8)
            rec_v = np.zeros((1, 1), dtype=np.int64)
        overflow = np.zeros((L, T), dtype=np.bool_)
        synops = np.zeros(L, dtype=np.int64)
        spike_count = np.zeros(L, dtype=np.int64)
        scores = np.zeros(model.n_classes, dtype=np.int64)
        _run_kernel(self.meta, self.weights, self.tab, self.thr, self.bias, self.nkey,
                    self.ktab, v, flags, in_ptr, in_src, in_n, T, model.readout == "membrane",
                    record, rec_s, rec_v, overflow, synops, spike_count, scores, keys)
        names = [layer.name for layer in model.layers]
        spikes, states = {}, {}
        if record:
            for layer, off in zip(model.layers, self.offsets):
                n = layer.n_out
                spikes[layer.name] = rec_s[:, off:off + n].reshape(T, *layer.out_shape)
                states[layer.name] = rec_v[:, off:off + n].reshape(T, *layer.out_shape)
        return Result(scores=scores, prediction=int(np.argmax(scores)),
                      overflow={nm: overflow[i] for i, nm in enumerate(names)},
                      synops={nm: int(synops[i]) for i, nm in enumerate(names)},
                      spike_count={nm: int(spike_count[i]) for i, nm in enumerate(names)},
                      spikes=spikes, states=states, input_spikes=binned.n_spikes)


class NumbaLayer:
    """Event-driven accumulation of one layer in ``(C, H, W)`` order, compiled.

    The same interface as the NumPy backend's per-layer engine
    (``accumulate(acc, src, count) -> synops`` and ``bias`` per neuron), for use
    outside the fused kernel of :func:`run_numba`.
    """

    def __init__(self, layer):
        self.layer = layer
        C, H, W = _spatial(layer.in_shape)
        if layer.type == "linear":
            C, H, W = layer.n_in, 1, 1
        Co, Ho, Wo = _spatial(layer.out_shape)
        self._dims = (_TYPES[layer.type], C, H, W, Co, Ho, Wo,
                      layer.kernel or 1, layer.stride or 1, layer.padding or 0)
        if layer.weights is not None:
            self.w = np.ascontiguousarray(layer.weights.astype(np.int64))
        else:
            self.w = np.zeros((1, 1, 1, 1), dtype=np.int64)
        if layer.type == "linear":
            self.w = self.w.reshape(Co, layer.n_in, 1, 1)
        if layer.bias is not None:
            self.bias = np.repeat(layer.bias.astype(np.int64), layer.n_out // layer.c_out)
        else:
            self.bias = None

    def accumulate(self, acc, src, count):
        """Add the weights of input spikes ``src`` (flat input index) x ``count`` to ``acc``.

        Returns the number of synaptic operations (weight additions) done.
        """
        if len(src) == 0:
            return 0
        typ, C, H, W, Co, Ho, Wo, K, S, P = self._dims
        if typ == 1:
            return int(_accumulate_linear(acc, self.w.reshape(Co, -1),
                                          np.asarray(src, np.int64),
                                          np.asarray(count, np.int64)))
        return int(_accumulate_chw(acc, self.w, typ, C, H, W, Co, Ho, Wo, K, S, P,
                                   np.asarray(src, np.int64), np.asarray(count, np.int64)))


@njit(**_JIT)
def _accumulate_linear(acc, w, src, count):
    ops = 0
    Co = w.shape[0]
    for e in range(src.shape[0]):
        s = src[e]
        n = count[e]
        for co in range(Co):
            acc[co] += w[co, s] * n
        ops += Co * n
    return ops


def run_numba(model: Model, binned, record=True, network=None, dtype=None):
    """Run ``model`` on one binned sample with the compiled kernel.

    Parameters
    ----------
    model : Model
    binned : BinnedEvents
    record : bool
        Keep per-step spikes and states of every layer. ``False`` skips the trace
        writes (faster; scores, flags and counts are the same).
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
