"""Verification components for the RTL benches (``tests/cocotb``).

Pure-Python pieces (importable without cocotb):

* :mod:`sim.tb.layout` -- bit layouts of the stream words (network input, layer
  events, state words), pack/unpack;
* :mod:`sim.tb.model` -- the expected behaviour of a network top (reference spikes,
  states, flags, scores; cycles from :mod:`sim.cycles`) and of single blocks;
* :mod:`sim.tb.scoreboard` -- compares what the monitors saw with the model and
  names the first mismatch (layer, step, neuron, expected, got).

cocotb pieces (import cocotb; use them inside a cocotb test only):

* :mod:`sim.tb.driver` -- valid/ready stream driver with random valid gaps;
* :mod:`sim.tb.monitor` -- stream monitor with optional random ready stalls, status
  monitor (step strobes and stamps), state readback through the status port.

Importing :mod:`sim.tb` itself imports neither cocotb nor ``hw``.
"""
