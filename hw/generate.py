"""``hw.generate``: Verilog of the network top for a model.

The output is deterministic (same model and parameters give byte-identical text) and
carries no source locations. It passes ``verilator --lint-only`` without errors (see
tests/hw/test_generate.py).

The command line is :mod:`hw.build` (``python -m hw.build --model DIR --board BOARD``
writes the board top's Verilog, build files and report).
"""

from amaranth.back import verilog

from .network import Network

__all__ = ["generate"]


def generate(model, *, name="snn_top", **params):
    """Verilog text of :class:`hw.network.Network` for ``model``.

    Parameters
    ----------
    model : sim.model.Model or path
        A model or a model directory.
    name : str
        Name of the top module.
    **params
        Passed to :class:`~hw.network.Network` (``lanes``, ``fifo_depth``, ``coord_bits``,
        ``cycle_bits``).

    Returns
    -------
    str
    """
    from sim.model import Model, load_model
    if not isinstance(model, Model):
        model = load_model(model)
    net = Network(model, **params)
    return verilog.convert(net, name=name, emit_src=False)
