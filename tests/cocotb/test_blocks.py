"""RTL tests of single blocks under cocotb: the network's FIFO and one layer engine per
layer type (random valid gaps in, random ready stalls out)."""

import numpy as np
import pytest

from sim.model import InputSpec, Model, save_model
from sim.randmodel import random_binned, random_layer

from .runner import build_dir, run_bench, save_binned, write_verilog


@pytest.mark.parametrize("depth", [2, 5])
def test_fifo(tmp_path, depth):
    from amaranth.lib.fifo import SyncFIFOBuffered
    bdir = build_dir(tmp_path, f"fifo{depth}")
    fifo = SyncFIFOBuffered(width=7, depth=depth)
    write_verilog_ports(fifo, bdir / "fifo.v", "fifo_top")
    run_bench(bdir, bdir / "fifo.v", "fifo_top", "bench_blocks",
              dict(seed=depth, width=7, n=300, gap=0.3, ready=0.5), testcase="fifo")


def write_verilog_ports(fifo, path, name):
    from amaranth.back import verilog
    ports = [fifo.w_en, fifo.w_data, fifo.w_rdy, fifo.r_en, fifo.r_data, fifo.r_rdy]
    path.write_text(verilog.convert(fifo, name=name, ports=ports, emit_src=False))


LAYERS = {
    "conv_s2_p1": dict(kind="conv2d", in_shape=(2, 6, 5), kw=dict(kernel=3, stride=2, padding=1,
                                                                   out_channels=3), lanes=2),
    "conv_k1_s3": dict(kind="conv2d", in_shape=(1, 7, 7), kw=dict(kernel=1, stride=3, padding=0,
                                                                   out_channels=2), lanes=None),
    "pool2": dict(kind="sumpool2d", in_shape=(3, 5, 4), kw=dict(kernel=2), lanes=2),
    "linear": dict(kind="linear", in_shape=(1, 3, 4), kw=dict(n_out=5), lanes=2),
    "linear_membrane": dict(kind="linear", in_shape=(2, 2, 2), kw=dict(n_out=3), lanes=None,
                            readout="membrane"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(tmp_path, name):
    from hw.layer import LayerEngine
    spec = LAYERS[name]
    rng = np.random.default_rng(sorted(LAYERS).index(name) + 40)
    clip = 2
    layer = random_layer(rng, "l0", spec["kind"], spec["in_shape"], count_clip=clip,
                         **spec["kw"])
    readout = spec.get("readout", "spike_count")
    model = Model(input=InputSpec(shape=spec["in_shape"], dt_us=1000, timesteps=3,
                                  count_clip=clip), layers=[layer], readout=readout)
    binned = random_binned(rng, spec["in_shape"], 3, clip, density=0.3)
    bdir = build_dir(tmp_path, f"layer_{name}")
    save_model(model, bdir / "model")
    save_binned(bdir / "binned.npz", binned)
    write_verilog(LayerEngine(layer, spec["lanes"], fire=readout != "membrane",
                              in_shape=spec["in_shape"]),
                  bdir / "layer.v", "layer_top")
    run_bench(bdir, bdir / "layer.v", "layer_top", "bench_blocks",
              dict(model=str(bdir / "model"), binned=str(bdir / "binned.npz"),
                   lanes=spec["lanes"], seed=3, gap=0.3, ready=0.6, order_seed=5, samples=2),
              testcase="layer")
