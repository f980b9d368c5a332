"""The compiled, event-driven backend of the reference (numba).

:func:`run_numba` computes exactly the integers of the NumPy backend in
:mod:`sim.reference` (same :class:`~sim.reference.Result`: spikes, states, overflow
flags, scores, prediction, synaptic operation counts), only faster. The whole
``T x layers`` loop runs inside one compiled call, so Python costs nothing per step.

How it works
------------
- The network is packed once (:class:`NumbaNetwork`) into flat arrays: one row of
  integer parameters per layer, all weights in one array, one state array.
- Inside the kernel every layer keeps its state **channel-last** (``H, W, C``) and its
  weights as ``(C_in, K, K, C_out)`` (conv) or ``(N_in, N_out)`` (linear, rows in the
  producer's channel-last order), so the innermost loop of every synaptic update runs
  over contiguous output channels.
- Synaptic work is event-driven, as in the contract: an input spike at ``(c, y, x)``
  visits only the output positions whose receptive field holds it
  (``oy * S - P + ky == y``; the range of ``oy`` is computed, not searched), a linear
  layer adds one weight column, a sum-pool adds the count at ``(y // K, x // K)``.
- The neuron update (clamp with overflow flag, ``u >= threshold``, reset
  subtract/zero/none, leak ``(u * num) >> frac_bits`` with an arithmetic shift) is the
  same rule as :func:`sim.reference.neuron_update`, written for one neuron.
- Spikes passed to the next layer are coordinates ``(y, x, c)``; recorded traces and
  scores are written in the contract's ``(C, H, W)`` order.

Synaptic operations are counted as in the NumPy backend: per input spike, its count
times (reached output positions x ``C_out``) for conv and linear layers, and one per
reached output for pooling.

Compiled code is cached on disk (``cache=True``); the first call of a fresh checkout
compiles (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .model import Model
from .reference import Result

__all__ = ["NumbaNetwork", "NumbaLayer", "run_numba", "to_channel_last_coords"]

# -- layout of one row of the per-layer parameter table ----------------------------------
(_TYPE, _CIN, _HIN, _WIN, _COUT, _HOUT, _WOUT, _K, _S, _P, _WOFF, _NOUT, _VOFF, _CHOFF,
 _SMIN, _SMAX, _BNUM, _BFRAC, _RESET, _FIRE, _HASBIAS) = range(21)
_NMETA = 21

_TYPES = {"conv2d": 0, "linear": 1, "sumpool2d": 2}
_RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


# -- synaptic accumulation (event-driven) -------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _conv_scatter(v, w, voff, woff, Co, Ho, Wo, K, S, P, ys, xs, cs, ns, a, b, counted):
    """Add the weights of input spikes ``a:b`` to a channel-last conv state."""
    ops = 0
    KCo = K * Co
    KKCo = K * KCo
    for e in range(a, b):
        y = ys[e]
        x = xs[e]
        c = cs[e]
        n = ns[e] if counted else 1
        ty = y + P
        tx = x + P
        # oy * S == ty - ky with 0 <= ky < K and 0 <= oy < Ho
        oy1 = ty // S
        if oy1 > Ho - 1:
            oy1 = Ho - 1
        lo = ty - K + 1
        oy0 = (lo + S - 1) // S if lo > 0 else 0
        ox1 = tx // S
        if ox1 > Wo - 1:
            ox1 = Wo - 1
        lo = tx - K + 1
        ox0 = (lo + S - 1) // S if lo > 0 else 0
        if oy1 < oy0 or ox1 < ox0:
            continue
        wc = woff + c * KKCo
        for oy in range(oy0, oy1 + 1):
            ky = ty - oy * S
            arow = voff + oy * Wo * Co
            wrow = wc + ky * KCo
            for ox in range(ox0, ox1 + 1):
                kx = tx - ox * S
                ab = arow + ox * Co
                wb = wrow + kx * Co
                if n == 1:
                    for co in range(Co):
                        v[ab + co] += w[wb + co]
                else:
                    for co in range(Co):
                        v[ab + co] += w[wb + co] * n
        ops += (oy1 - oy0 + 1) * (ox1 - ox0 + 1) * Co * n
    return ops


@njit(cache=True, nogil=True, inline="always")
def _linear_scatter(v, w, voff, woff, Cin, Win, Co, ys, xs, cs, ns, a, b, counted):
    """Add one weight row (``N_out`` contiguous weights) per input spike."""
    ops = 0
    for e in range(a, b):
        n = ns[e] if counted else 1
        wb = woff + ((ys[e] * Win + xs[e]) * Cin + cs[e]) * Co
        if n == 1:
            for co in range(Co):
                v[voff + co] += w[wb + co]
        else:
            for co in range(Co):
                v[voff + co] += w[wb + co] * n
        ops += Co * n
    return ops


@njit(cache=True, nogil=True, inline="always")
def _pool_scatter(v, voff, Co, Ho, Wo, K, ys, xs, cs, ns, a, b, counted):
    """Sum-pool: each input spike adds its count at ``(y // K, x // K)``."""
    ops = 0
    for e in range(a, b):
        oy = ys[e] // K
        ox = xs[e] // K
        if oy < Ho and ox < Wo:
            n = ns[e] if counted else 1
            v[voff + (oy * Wo + ox) * Co + cs[e]] += n
            ops += n
    return ops


# -- the neuron update ----------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _update(v, thr, bias, m, k, T, last, membrane, sy, sx, sc,
            record, rec_s, rec_v, scores):
    """Steps 3-5 of the contract for every neuron of one layer (channel-last).

    Writes the coordinates of the neurons that fire to ``sy, sx, sc`` from
    ``m[_VOFF]`` on and returns ``(number of spikes, overflow flag)``.
    """
    Co = m[_COUT]
    Ho = m[_HOUT]
    Wo = m[_WOUT]
    voff = m[_VOFF]
    choff = m[_CHOFF]
    smin = m[_SMIN]
    smax = m[_SMAX]
    num = m[_BNUM]
    frac = m[_BFRAC]
    reset = m[_RESET]
    fire = m[_FIRE] != 0
    hasbias = m[_HASBIAS] != 0
    HW = Ho * Wo
    ovf = False
    nsp = 0
    i = voff
    for y in range(Ho):
        for x in range(Wo):
            pix = y * Wo + x
            for c in range(Co):
                acc = v[i]
                if hasbias:
                    acc += bias[choff + c]
                u = acc
                if u < smin:
                    u = smin
                elif u > smax:
                    u = smax
                ovf |= u != acc
                th = thr[choff + c]
                s = fire and u >= th
                nv = (u * num) >> frac
                if s:
                    if reset == 0:
                        nv -= th
                    elif reset == 1:
                        nv = 0
                v[i] = nv
                # branch-free spike list: always write, advance only on a spike
                sy[voff + nsp] = y
                sx[voff + nsp] = x
                sc[voff + nsp] = c
                nsp += s
                j = c * HW + pix
                if record:
                    rec_s[k, voff + j] = s
                    rec_v[k, voff + j] = nv
                if last:
                    if membrane:
                        if k == T - 1:
                            scores[j] = u
                    elif s:
                        scores[j] += 1
                i += 1
    return nsp, ovf


@njit(cache=True, nogil=True)
def _run_kernel(meta, w, thr, bias, v, in_ptr, in_y, in_x, in_c, in_n, T, membrane,
                record, rec_s, rec_v, overflow, synops, spike_count, scores, sy, sx, sc):
    """All ``T`` steps of all layers. Every output array is filled in place."""
    L = meta.shape[0]
    nprev = 0
    for k in range(T):
        for li in range(L):
            m = meta[li]
            typ = m[_TYPE]
            voff = m[_VOFF]
            if li == 0:
                ys, xs, cs = in_y, in_x, in_c
                a = in_ptr[k]
                b = in_ptr[k + 1]
                counted = True
            else:
                ys, xs, cs = sy, sx, sc
                a = meta[li - 1, _VOFF]
                b = a + nprev
                counted = False
            if typ == 0:
                ops = _conv_scatter(v, w, voff, m[_WOFF], m[_COUT], m[_HOUT], m[_WOUT],
                                    m[_K], m[_S], m[_P], ys, xs, cs, in_n, a, b, counted)
            elif typ == 1:
                ops = _linear_scatter(v, w, voff, m[_WOFF], m[_CIN], m[_WIN], m[_COUT],
                                      ys, xs, cs, in_n, a, b, counted)
            else:
                ops = _pool_scatter(v, voff, m[_COUT], m[_HOUT], m[_WOUT], m[_K],
                                    ys, xs, cs, in_n, a, b, counted)
            synops[li] += ops
            nsp, ovf = _update(v, thr, bias, m, k, T, li == L - 1, membrane, sy, sx, sc,
                               record, rec_s, rec_v, scores)
            overflow[li, k] = ovf
            spike_count[li] += nsp
            nprev = nsp


@njit(cache=True, nogil=True)
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


def to_channel_last_coords(src, shape):
    """Split flat ``(C, H, W)`` indices into ``(y, x, c)`` int64 arrays."""
    C, H, W = _spatial(shape)
    src = np.asarray(src, dtype=np.int64)
    return (src // W) % H, src % W, src // (H * W)


class NumbaNetwork:
    """A model packed for the compiled kernel (built once, run on many samples).

    Parameters
    ----------
    model : Model

    Notes
    -----
    The packed arrays are copies: changing ``model`` afterwards does not change a
    ``NumbaNetwork`` built before.
    """

    def __init__(self, model: Model):
        self.model = model
        layers = model.layers
        L = len(layers)
        meta = np.zeros((L, _NMETA), dtype=np.int64)
        weights, thr, bias = [], [], []
        woff = voff = choff = 0
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
                row[_K], row[_S], row[_P] = layer.kernel, layer.stride, layer.padding
                # (C_out, C_in, K, K) -> (C_in, K, K, C_out)
                wl = np.ascontiguousarray(np.transpose(layer.weights.astype(np.int64),
                                                       (1, 2, 3, 0)))
            elif layer.type == "linear":
                # (N_out, N_in) with N_in in the producer's (C, H, W) order
                # -> rows in the producer's (H, W, C) order, columns N_out
                wl = layer.weights.astype(np.int64).T.reshape(Ci, Hi, Wi, Co)
                wl = np.ascontiguousarray(np.transpose(wl, (1, 2, 0, 3)))
            else:
                row[_K], row[_S], row[_P] = layer.kernel, layer.kernel, 0
                wl = np.zeros(0, dtype=np.int64)
            row[_WOFF] = woff
            row[_VOFF] = voff
            row[_CHOFF] = choff
            row[_SMIN], row[_SMAX] = layer.state_min, layer.state_max
            row[_BNUM], row[_BFRAC] = layer.beta_num, layer.beta_frac_bits
            row[_RESET] = _RESET_CODES[layer.reset]
            row[_FIRE] = 0 if (model.readout == "membrane" and i == L - 1) else 1
            row[_HASBIAS] = layer.bias is not None
            weights.append(wl.ravel())
            thr.append(np.asarray(layer.threshold, dtype=np.int64).reshape(-1)
                       * np.ones(Co, dtype=np.int64))
            bias.append(np.zeros(Co, np.int64) if layer.bias is None
                        else layer.bias.astype(np.int64).reshape(Co))
            woff += wl.size
            voff += Co * Ho * Wo
            choff += Co
            prev = (Co, Ho, Wo)
        self.meta = meta
        self.weights = np.concatenate(weights) if woff else np.zeros(1, np.int64)
        self.thr = np.concatenate(thr)
        self.bias = np.concatenate(bias)
        self.n_neurons = voff
        self.offsets = meta[:, _VOFF].copy()

    def run(self, binned, record=True):
        """Run one binned sample; same :class:`~sim.reference.Result` as the NumPy backend."""
        model = self.model
        T = model.input.timesteps
        L = len(model.layers)
        in_y, in_x, in_c = to_channel_last_coords(binned.src, model.input.shape)
        in_n = np.ascontiguousarray(binned.count, dtype=np.int64)
        in_ptr = np.ascontiguousarray(binned.step_ptr, dtype=np.int64)
        N = self.n_neurons
        v = np.zeros(N, dtype=np.int64)
        sy = np.empty(N, dtype=np.int64)
        sx = np.empty(N, dtype=np.int64)
        sc = np.empty(N, dtype=np.int64)
        if record:
            rec_s = np.zeros((T, N), dtype=np.uint8)
            rec_v = np.zeros((T, N), dtype=np.int64)
        else:
            rec_s = np.zeros((1, 1), dtype=np.uint8)
            rec_v = np.zeros((1, 1), dtype=np.int64)
        overflow = np.zeros((L, T), dtype=np.bool_)
        synops = np.zeros(L, dtype=np.int64)
        spike_count = np.zeros(L, dtype=np.int64)
        scores = np.zeros(model.n_classes, dtype=np.int64)
        _run_kernel(self.meta, self.weights, self.thr, self.bias, v, in_ptr, in_y, in_x,
                    in_c, in_n, T, model.readout == "membrane", record, rec_s, rec_v,
                    overflow, synops, spike_count, scores, sy, sx, sc)
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


@njit(cache=True, nogil=True)
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


def run_numba(model: Model, binned, record=True, network=None):
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

    Returns
    -------
    Result
        The same integers as ``sim.reference.run(..., backend="numpy")``.
    """
    if network is None or network.model is not model:
        network = NumbaNetwork(model)
    return network.run(binned, record=record)
