"""The version-2 target networks of the graph hardware (issue "Graphs in hardware"), with
random weights: their shapes, not their accuracy, decide resources and latency.

``sts_resnet``
    A small STS-ResNet-shaped event-camera net on 2x128x128 input: a strided conv stem
    (2->4 5x5 stride 4, 4->8 3x3 stride 2), two residual blocks at 8x16x16 (conv 3x3,
    conv 3x3 plus an identity shortcut from the block input), a 2x2 sum pool and a linear
    classifier (11 classes).
``delay_net``
    2x32x32 input, one conv synapse (2->8 5x5 stride 2) with 8 taps (delays 0..7), and a
    linear readout (10 classes).
``recurrent_net``
    12 input channels (shape 12x1x1), 38 recurrent current-based neurons (a linear input synapse and a
    linear recurrent synapse with delay 1), a linear readout to 7 outputs (membrane
    readout).

Each builder returns a validated :class:`sim.model.Model`; ``acc_bits`` is the contract's
worst case; :func:`calibrate` sets the thresholds so that about 10 % of each layer's
neurons fire per step on a random input with 8 % of the input positions active.
``python -m bench.v2_models DIR`` writes the three model directories under ``DIR``.
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.model import INPUT, Current, InputSpec, Layer, Model, Synapse, validate_model  # noqa: E402
from sim.registry import KINDS  # noqa: E402

__all__ = ["sts_resnet", "delay_net", "recurrent_net", "MODELS"]

WEIGHT_BITS = 8
STATE_BITS = 16
INPUT_ACTIVITY = 0.08      # share of input positions with an event per step
TARGET_RATE = 0.1          # share of a layer's neurons firing per step after calibration


def _synapse(rng, source, kind, src_shape, out_channels=None, *, kernel=None, stride=None,
             padding=None, delay=0, taps=1, weight_bits=WEIGHT_BITS, excit=0.6):
    """A synapse of ``kind`` with random weights (mostly excitatory) and its out shape."""
    k = KINDS[kind]
    in_shape = k.input_shape(src_shape)
    syn = Synapse(source=source, type=kind, kernel=kernel, stride=stride, padding=padding,
                  delay=delay, taps=taps, in_shape=in_shape)
    channels = out_channels if out_channels is not None else src_shape[0]
    out_shape = tuple(k.out_shape(syn, in_shape, channels))
    base = k.weight_shape(syn, in_shape, out_shape)
    if base is not None:
        lim = (1 << (weight_bits - 1)) - 1
        shape = (taps, *base) if taps > 1 else base
        w = rng.integers(-lim, lim + 1, size=shape).astype(np.int64)
        syn.weights = np.where(rng.random(shape) < excit, np.abs(w), w)
        syn.weight_bits = weight_bits
    return syn, out_shape


def _layer(name, out_shape, synapses, *, current=None, beta=(15, 4), spike_limit=1,
           reset="subtract"):
    """A layer with a placeholder threshold (see :func:`calibrate`)."""
    thr = 1
    return Layer(name=name, out_shape=tuple(out_shape), synapses=synapses, bias=None,
                 state_bits=STATE_BITS, acc_bits=62, beta_num=beta[0], beta_frac_bits=beta[1],
                 threshold=np.full(out_shape[0], thr, dtype=np.int64),
                 threshold_per_channel=False, reset=reset, spike_limit=spike_limit,
                 current=current)


def _model(layers, *, input_shape, timesteps, readout="spike_count", count_clip=1, rng):
    model = Model(input=InputSpec(shape=tuple(input_shape), dt_us=1000, timesteps=timesteps,
                                  count_clip=count_clip), layers=layers, readout=readout)
    for i, layer in enumerate(layers):
        layer.acc_bits = model.required_acc_bits(i)
    return calibrate(validate_model(model), rng)


def sample(model, rng, activity=INPUT_ACTIVITY):
    """A random binned input with ``activity`` events per input position and step."""
    from sim.events import bin_events, make_events
    inp = model.input
    n = max(1, round(activity * int(np.prod(inp.shape)) * inp.timesteps))
    events = make_events(tuple(inp.shape), n, inp.timesteps * inp.dt_us, rng)
    return bin_events(events, tuple(inp.shape), inp.timesteps, inp.dt_us, inp.count_clip)


def calibrate(model, rng, target=TARGET_RATE, activity=INPUT_ACTIVITY):
    """Set each layer's threshold (in order) so that about ``target`` of its neurons fire
    per step on a random input of ``activity`` (a bisection on the one threshold; the
    output layer of a membrane readout keeps its threshold). Returns ``model``."""
    from sim import reference
    binned = sample(model, rng, activity)
    n = len(model.layers)
    for i, layer in enumerate(model.layers):
        if model.readout == "membrane" and i == n - 1:
            break
        lo, hi = 1, layer.state_max
        while lo < hi:
            mid = (lo + hi) // 2
            layer.threshold[:] = mid
            rate = float(np.mean(reference.run(model, binned).spikes[layer.name] > 0))
            if rate > target:
                lo = mid + 1
            else:
                hi = mid
        layer.threshold[:] = lo
    return model


def sts_resnet(seed=0, timesteps=8):
    """The residual event-camera net (see the module docstring)."""
    rng = np.random.default_rng(seed)
    layers = []

    def add(name, synapses, out_shape, **kw):
        layers.append(_layer(name, out_shape, synapses, **kw))
        return name, out_shape

    s1, sh1 = _synapse(rng, INPUT, "conv2d", (2, 128, 128), 4, kernel=5, stride=4, padding=2)
    src = add("stem1", [s1], sh1)
    s2, sh2 = _synapse(rng, src[0], "conv2d", src[1], 8, kernel=3, stride=2, padding=1)
    src = add("stem2", [s2], sh2)
    for b in (1, 2):
        block_in = src
        sa, sha = _synapse(rng, block_in[0], "conv2d", block_in[1], 8, kernel=3, stride=1,
                           padding=1)
        mid = add(f"block{b}a", [sa], sha)
        sb, shb = _synapse(rng, mid[0], "conv2d", mid[1], 8, kernel=3, stride=1, padding=1)
        skip, _ = _synapse(rng, block_in[0], "identity", block_in[1], excit=1.0)
        src = add(f"block{b}b", [sb, skip], shb)
    sp, shp = _synapse(rng, src[0], "sumpool2d", src[1], kernel=2, stride=2, padding=0)
    src = add("pool", [sp], shp)
    sl, shl = _synapse(rng, src[0], "linear", src[1], 11)
    add("fc", [sl], shl)
    return _model(layers, input_shape=(2, 128, 128), timesteps=timesteps, rng=rng)


def delay_net(seed=0, timesteps=16, taps=8):
    """The delay net (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sc, shc = _synapse(rng, INPUT, "conv2d", (2, 32, 32), 8, kernel=5, stride=2, padding=2,
                       taps=taps)
    conv = _layer("conv", shc, [sc])
    sl, shl = _synapse(rng, "conv", "linear", shc, 10)
    fc = _layer("fc", shl, [sl])
    return _model([conv, fc], input_shape=(2, 32, 32), timesteps=timesteps, rng=rng)


def recurrent_net(seed=0, timesteps=16):
    """The recurrent current-based net (see the module docstring)."""
    rng = np.random.default_rng(seed)
    si, sh = _synapse(rng, INPUT, "linear", (12, 1, 1), 38)
    sr, _ = _synapse(rng, "rec", "linear", (38,), 38, delay=1, excit=0.5)
    rec = _layer("rec", sh, [si, sr],
                 current=Current(beta_num=12, beta_frac_bits=4, state_bits=STATE_BITS))
    so, sho = _synapse(rng, "rec", "linear", sh, 7)
    out = _layer("out", sho, [so])
    return _model([rec, out], input_shape=(12, 1, 1), timesteps=timesteps,
                  readout="membrane", rng=rng)


MODELS = {"sts_resnet": sts_resnet, "delay_net": delay_net, "recurrent_net": recurrent_net}


def main(argv=None):
    """``python -m bench.v2_models DIR``: write the three model directories under DIR."""
    from sim.cli import ArgumentParser, CliError
    from sim.model import save_model

    p = ArgumentParser(prog="python -m bench.v2_models",
                       description="Write the version-2 target model directories.")
    p.add_argument("out", type=Path, help="folder to create the model directories in")
    args = p.parse_args(argv)
    if not args.out.is_dir():
        raise CliError(f"{args.out}: not a directory")
    for name, build in MODELS.items():
        model = build()
        save_model(model, args.out / name, overwrite=False)
        print(f"{args.out / name}: {len(model.layers)} layers, {model.n_neurons} neurons, "
              f"{model.n_weights} weights")
    return 0


if __name__ == "__main__":
    from sim.cli import run_main
    run_main(main, prog="python -m bench.v2_models")
