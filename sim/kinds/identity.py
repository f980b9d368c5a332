"""``identity``: one weight per channel between tensors of the same shape. A count
``c`` at ``(ch, y, x)`` adds ``c * w[ch]`` to neuron ``(ch, y, x)`` only (a 1-D tensor
``(N,)`` has ``N`` channels). Weights ``(C,)``. With one weight of 1 per channel this is
a plain skip connection; several taps of it are a per-channel delay line."""

from __future__ import annotations

import numpy as np

from ..registry import KINDS, Kind

__all__ = ["Identity"]


class Identity(Kind):
    name = "identity"

    def out_shape(self, syn, in_shape, channels):
        return tuple(in_shape)

    def weight_shape(self, syn, in_shape, out_shape):
        return (out_shape[0],)

    def fan_in_abs(self, syn, out_shape):
        w = np.abs(syn.weights.astype(np.int64))
        if syn.taps > 1:
            w = w.sum(axis=0)
        return [int(x) for x in w.tolist()]

    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        per_channel = int(np.prod(in_shape[1:]))
        acc[src] += w[src // per_channel] * count
        return int(count.sum())

    def pack(self, syn, w, in3, out3):
        from ..kernels import CHANNEL
        # the channel primitive with a 1x1 window and the channel's weight
        return CHANNEL, 1, 1, 0, w.astype(np.int64)

    def event_positions(self, syn, in3, out3):
        return np.ones(in3, dtype=np.int64)

    def event_window(self, syn, in3, out3):
        # an event reaches its own position only
        ys, xs = np.arange(in3[1], dtype=np.int64), np.arange(in3[2], dtype=np.int64)
        return ys, ys.copy(), xs, xs.copy()

    def event_updates(self, syn, in3, out3, groups):
        # an event reaches its own channel only: one update, whatever the lane groups
        return np.ones(in3, dtype=np.int64)

    def random_geometry(self, rng, src_shape, out_shape=None, max_channels=3):
        if out_shape is not None and tuple(out_shape) != tuple(src_shape):
            return None
        return None, None, None, tuple(src_shape)


KINDS.register(Identity())
