"""RTL tests of the network top under cocotb (Icarus by default, ``SIM=verilator``).

Each case builds one small model, writes the Verilog of ``hw.network.Network`` and runs
``bench_network``: every spike, flag, score and (in readback mode) every stored state
of every step is compared with ``sim.reference``, and the cycle at which every layer
finishes every step with ``sim.cycles``.
"""

import numpy as np
import pytest

from sim.model import save_model
from sim.randmodel import random_binned, random_model

from .runner import build_dir, run_bench, save_binned, write_verilog

pytestmark = pytest.mark.slow


def _run(tmp_path, name, model, binned, *, lanes=None, fifo_depth=4, **case):
    from hw.network import Network
    bdir = build_dir(tmp_path, name)
    save_model(model, bdir / "model")
    save_binned(bdir / "binned.npz", binned)
    write_verilog(Network(model, lanes=lanes, fifo_depth=fifo_depth), bdir / "network_top.v",
                  "network_top")
    case.update(model=str(bdir / "model"), binned=str(bdir / "binned.npz"), lanes=lanes,
                fifo_depth=fifo_depth)
    run_bench(bdir, bdir / "network_top.v", "network_top", "bench_network", case)


def _small(seed, **kw):
    rng = np.random.default_rng(seed)
    model = random_model(rng, **kw)
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    return model, binned


def test_small_random_streaming(tmp_path):
    """Conv -> pool -> linear, full-rate input, exact cycles."""
    model, binned = _small(1, kinds=["conv2d", "sumpool2d", "linear"], timesteps=3,
                           input_shape=(2, 6, 6))
    _run(tmp_path, "small_stream", model, binned, fifo_depth=4)


def test_small_random_readback_gaps(tmp_path):
    """Same topology, random valid gaps, states read back through the status port after
    every step, two samples (the end-of-sample clear)."""
    model, binned = _small(2, kinds=["conv2d", "linear"], timesteps=3, input_shape=(1, 5, 5))
    _run(tmp_path, "small_readback", model, binned, lanes=[2, 3], fifo_depth=2,
         readback=True, gap=0.3, seed=7, samples=2, order_seed=3)
