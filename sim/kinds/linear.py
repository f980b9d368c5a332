"""``linear``: ``N_in -> N_out`` on the flattened source (the flatten is implicit).
Weights ``(N_out, N_in)``; input ``i`` adds ``w[n, i]`` to every output ``n``."""

from __future__ import annotations

import numpy as np

from ..registry import KINDS, Kind

__all__ = ["Linear"]


class Linear(Kind):
    name = "linear"
    rom_layout = "addr = input index"

    def input_shape(self, source_shape):
        return (int(np.prod(source_shape)),)

    def out_shape(self, syn, in_shape, channels):
        return (channels,)

    def weight_shape(self, syn, in_shape, out_shape):
        return (out_shape[0], in_shape[0])

    def fan_in_abs(self, syn, out_shape):
        w = np.abs(syn.weights.astype(np.int64))
        if syn.taps > 1:
            w = w.sum(axis=0)
        return [int(x) for x in w.sum(axis=1).tolist()]

    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        acc += w[:, src] @ count
        return int(count.sum()) * out_shape[0]

    def pack(self, syn, w, in3, out3):
        from ..kernels import ROW
        Ci, Hi, Wi = in3
        # (N_out, N_in) with N_in in the source's (C, H, W) order -> rows in the source's
        # channel-last (H, W, C) order, columns N_out
        wl = w.astype(np.int64).T.reshape(Ci, Hi, Wi, out3[0])
        return ROW, 1, 1, 0, np.transpose(wl, (1, 2, 0, 3))

    def event_positions(self, syn, in3, out3):
        return np.ones(in3, dtype=np.int64)

    def event_window(self, syn, in3, out3):
        zeros = np.zeros(in3[1], dtype=np.int64), np.zeros(in3[2], dtype=np.int64)
        return zeros[0], zeros[0], zeros[1], zeros[1]      # the one position

    def rom_columns(self, w):
        return w.T                                       # address = input index

    def random_geometry(self, rng, src_shape, out_shape=None, max_channels=3):
        if out_shape is None:
            return None, None, None, (int(rng.integers(1, 9)),)
        return (None, None, None, tuple(out_shape)) if len(out_shape) == 1 else None


KINDS.register(Linear())
