"""``sumpool2d``: per channel, kernel ``K``, stride ``K``, no padding (a depthwise
convolution of ones; no weights). An input spike at ``(c, y, x)`` adds its count to
``(c, y // K, x // K)`` when that output exists (a ragged border is ignored)."""

from __future__ import annotations

import numpy as np

from ..registry import KINDS, Kind, SynapseError
from .conv2d import _positions, _window

__all__ = ["SumPool2d"]


class SumPool2d(Kind):
    name = "sumpool2d"
    geometry = True
    spatial = True

    def check(self, syn, in_shape):
        super().check(syn, in_shape)
        if syn.stride != syn.kernel or syn.padding != 0:
            raise SynapseError(None, f"sumpool2d needs stride == kernel and padding 0, got "
                                     f"kernel {syn.kernel}, stride {syn.stride}, padding "
                                     f"{syn.padding}")

    def out_shape(self, syn, in_shape, channels):
        c, h, w = in_shape
        return (c, h // syn.kernel, w // syn.kernel)

    def fan_in_abs(self, syn, out_shape):
        return [syn.kernel * syn.kernel * syn.taps] * out_shape[0]

    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        C, H, W = in_shape
        c, y, x = src // (H * W), (src // W) % H, src % W
        Co, Ho, Wo = out_shape
        k = syn.kernel
        oy, ox = y // k, x // k
        ok = (oy < Ho) & (ox < Wo)
        np.add.at(acc, (c[ok] * Ho + oy[ok]) * Wo + ox[ok], count[ok])
        return int(count[ok].sum())

    def pack(self, syn, w, in3, out3):
        from ..kernels import CHANNEL
        return CHANNEL, syn.kernel, syn.kernel, 0, np.ones(in3[0], dtype=np.int64)

    def event_positions(self, syn, in3, out3):
        return _positions(in3, out3, syn.kernel, syn.kernel, 0)

    def event_window(self, syn, in3, out3):
        return _window(in3, out3, syn.kernel, syn.kernel, 0)

    def random_geometry(self, rng, src_shape, out_shape=None, max_channels=3):
        if len(src_shape) != 3:
            return None
        C, H, W = src_shape
        if out_shape is None:
            K = int(rng.integers(1, min(2, H, W) + 1))
            return K, K, 0, (C, H // K, W // K)
        options = [K for K in range(1, 4)
                   if tuple(out_shape) == (C, H // K, W // K) and min(H, W) >= K]
        if not options:
            return None
        K = options[int(rng.integers(len(options)))]
        return K, K, 0, tuple(out_shape)


KINDS.register(SumPool2d())
