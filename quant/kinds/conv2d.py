"""``conv2d`` in torch: :func:`torch.nn.functional.conv2d` with the synapse's stride and
zero padding (weights ``(C_out, C_in, K, K)``)."""

import torch.nn.functional as F

from sim.registry import KINDS

from .base import TorchOp

__all__ = ["Conv2dOp"]


class Conv2dOp(TorchOp):
    fan_axes = 3

    def apply(self, syn, x, w):
        return F.conv2d(x, w, stride=syn.stride, padding=syn.padding)


KINDS["conv2d"].attach("quant.torch", Conv2dOp())
