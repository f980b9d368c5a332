"""A float network description: what importers produce and the quantizer consumes.

Training (``quant.train``), the snnTorch and NIR importers all end in a
:class:`FloatNet`; :func:`quant.ptq.quantize` turns it into an integer
:class:`sim.model.Model`. The float semantics are those of the contract without
rounding or clamping (docs/semantics.md), per layer and step::

    acc = v + W @ s_in + b
    s   = acc >= threshold
    v   = beta * acc - s * threshold      # reset "subtract"
    v   = 0 if s else beta * acc          # reset "zero"
    v   = beta * acc                      # reset "none"

so a float net and its quantized model differ only by rounding. Importers translate
their framework's conventions (strict ``>`` compares, reset timing, ``tau`` and ``dt``)
into this form and report what they chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FloatLayer", "FloatNet", "NetImportError"]


class NetImportError(ValueError):
    """A network cannot be imported; the message names the layer and why."""


@dataclass
class FloatLayer:
    """One layer with real-valued parameters.

    ``weight`` is ``(C_out, C_in, K, K)`` for ``conv2d``, ``(N_out, N_in)`` for ``linear``,
    ``None`` for ``sumpool2d``. ``beta`` and ``threshold`` are scalars or one value per
    output channel (the contract allows per-channel thresholds but one beta per layer;
    the quantizer rejects per-channel beta that differ).
    """
    name: str
    type: str
    in_shape: tuple
    out_shape: tuple
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    beta: float | np.ndarray = 1.0
    threshold: float | np.ndarray = 1.0
    reset: str = "subtract"


@dataclass
class FloatNet:
    """A whole float network plus the input settings of the model it becomes."""
    input_shape: tuple
    layers: list
    timesteps: int
    dt_us: int = 1000
    count_clip: int = 1
    readout: str = "spike_count"
    meta: dict = field(default_factory=dict)
