"""``sumpool2d`` in torch: per channel, the sum of the counts in each ``K x K`` window
(stride ``K``, a ragged border ignored); no weights."""

import torch.nn.functional as F

from sim.registry import KINDS

from .base import TorchOp

__all__ = ["SumPool2dOp"]


class SumPool2dOp(TorchOp):
    weighted = False

    def apply(self, syn, x, w):
        return F.avg_pool2d(x, syn.kernel, stride=syn.kernel, divisor_override=1)

    def init_weight(self, w):
        raise ValueError("a sumpool2d synapse has no weights")


KINDS["sumpool2d"].attach("quant.torch", SumPool2dOp())
