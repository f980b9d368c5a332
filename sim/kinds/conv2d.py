"""``conv2d``: ``C_in -> C_out``, square kernel ``K``, stride ``S``, zero padding
``P < K``, no groups. Weights ``(C_out, C_in, K, K)``; an input spike at ``(c, y, x)``
adds ``w[co, c, ky, kx]`` to every output ``(co, oy, ox)`` with
``oy * S - P + ky == y`` and ``ox * S - P + kx == x``."""

from __future__ import annotations

import numpy as np

from ..geometry import axis_range, conv_out_size
from ..registry import KINDS, Kind

__all__ = ["Conv2d", "conv_strips"]


def conv_strips(weights, S):
    """``(C_out, C_in, K, K)`` -> ``(C_in, S, NT, S, NT, C_out)`` with ``NT = ceil(K / S)``:
    entry ``(c, ry, jy, rx, jx)`` holds tap ``(top(ry) - S * jy, top(rx) - S * jx)``,
    ``top(r)`` being the largest tap ``= r (mod S)``; zeros where no tap exists. For one
    input pixel the taps of consecutive output columns are then consecutive (the layout
    of the compiled kernel's strip primitive)."""
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


class Conv2d(Kind):
    name = "conv2d"
    rom_layout = "addr = (c_in*K + ky)*K + kx"
    geometry = True
    spatial = True

    def out_shape(self, syn, in_shape, channels):
        _, h, w = in_shape
        return (channels, conv_out_size(h, syn.kernel, syn.stride, syn.padding),
                conv_out_size(w, syn.kernel, syn.stride, syn.padding))

    def weight_shape(self, syn, in_shape, out_shape):
        return (out_shape[0], in_shape[0], syn.kernel, syn.kernel)

    def fan_in_abs(self, syn, out_shape):
        w = np.abs(syn.weights.astype(np.int64))
        if syn.taps > 1:
            w = w.sum(axis=0)
        return [int(x) for x in w.reshape(w.shape[0], -1).sum(axis=1).tolist()]

    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        C, H, W = in_shape
        c, y, x = src // (H * W), (src // W) % H, src % W
        Co, Ho, Wo = out_shape
        K, S, P = syn.kernel, syn.stride, syn.padding
        ops = 0
        for ky in range(K):
            ny = y + P - ky
            oky = (ny % S == 0) & (ny >= 0) & (ny // S < Ho)
            if not oky.any():
                continue
            for kx in range(K):
                nx = x + P - kx
                ok = oky & (nx % S == 0) & (nx >= 0) & (nx // S < Wo)
                if not ok.any():
                    continue
                oy, ox, cc, cnt = ny[ok] // S, nx[ok] // S, c[ok], count[ok]
                contrib = w[:, cc, ky, kx] * cnt           # (C_out, n)
                flat = (np.arange(Co)[:, None] * Ho + oy) * Wo + ox
                np.add.at(acc, flat.ravel(), contrib.ravel())
                ops += int(cnt.sum()) * Co
        return ops

    def pack(self, syn, w, in3, out3):
        from ..kernels import STRIP
        return STRIP, syn.kernel, syn.stride, syn.padding, conv_strips(w, syn.stride)

    def event_positions(self, syn, in3, out3):
        return _positions(in3, out3, syn.kernel, syn.stride, syn.padding)

    def event_window(self, syn, in3, out3):
        return _window(in3, out3, syn.kernel, syn.stride, syn.padding)

    def rom_columns(self, w):
        return w.reshape(w.shape[0], -1).T              # address (c_in*K + ky)*K + kx

    def random_geometry(self, rng, src_shape, out_shape=None, max_channels=3):
        if len(src_shape) != 3:
            return None
        C, H, W = src_shape
        if out_shape is None:
            K = int(rng.integers(1, min(3, H, W) + 1))
            S = int(rng.integers(1, 3))
            P = int(rng.integers(0, K))
            return K, S, P, (int(rng.integers(1, max_channels + 1)),
                             conv_out_size(H, K, S, P), conv_out_size(W, K, S, P))
        if len(out_shape) != 3:
            return None
        _, Ho, Wo = out_shape
        options = [(K, S, P) for K in range(1, 6) for S in range(1, 4) for P in range(K)
                   if conv_out_size(H, K, S, P) == Ho and conv_out_size(W, K, S, P) == Wo]
        if not options:
            return None
        return (*options[int(rng.integers(len(options)))], tuple(out_shape))


def _positions(in3, out3, K, S, P):
    """Output positions of an event at every ``(c, y, x)`` (conv windows)."""
    C, H, W = in3
    _, Ho, Wo = out3
    lo, hi = axis_range(H, Ho, K, S, P)
    ny = np.maximum(hi - lo + 1, 0)
    lo, hi = axis_range(W, Wo, K, S, P)
    nx = np.maximum(hi - lo + 1, 0)
    return np.broadcast_to((ny[:, None] * nx[None, :])[None], (C, H, W)).copy()


def _window(in3, out3, K, S, P):
    """``(ylo, yhi, xlo, xhi)`` of the conv windows (:meth:`Kind.event_window`)."""
    ylo, yhi = axis_range(in3[1], out3[1], K, S, P)
    xlo, xhi = axis_range(in3[2], out3[2], K, S, P)
    return ylo, yhi, xlo, xhi


KINDS.register(Conv2d())
