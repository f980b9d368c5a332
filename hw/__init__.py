"""Hardware: Amaranth blocks of the event-driven accelerator (see docs/architecture.md).

``hw.generate(model_dir_or_Model, **params)`` returns the Verilog of the network top.
"""

from .generate import generate

__all__ = ["generate"]
