"""The torch operators of the synapse kinds, one module per kind.

Importing this package attaches a ``"quant.torch"`` part to every built-in kind of
:data:`sim.registry.KINDS` (the registry that also holds each kind's reference rules).
:mod:`quant.graph` finds a synapse's operator with
``KINDS[syn.type].part("quant.torch")``; a new kind adds its operator in a new module
here. Every operator has the interface of :class:`quant.kinds.base.TorchOp`.
"""

from . import conv2d, identity, linear, sumpool2d  # noqa: F401
from .base import TorchOp, torch_op

__all__ = ["TorchOp", "torch_op"]
