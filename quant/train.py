"""Train a spiking network on an event data set: ``python -m quant.train``.

::

    python -m quant.train --dataset digits --out runs/digits
    python -m quant.train --dataset gesture_synth --out runs/gesture --epochs 12
    python -m quant.train --dataset nmnist --root ~/data --out runs/nmnist
    python -m quant.train --dataset temporal_synth --arch temporal --out runs/temporal
    python -m quant.train --dataset temporal_synth --arch my_graph.json --out runs/mine

The net (one per data set unless ``--arch`` says otherwise) is a chain of
:data:`ARCHS`, run step by step through time in :mod:`quant.lif`, or a version-2 graph
of :data:`GRAPH_ARCHS` (or a JSON file in that form: residual joins, sum pooling,
dropout while training, delayed taps whose weights are learnt per delay, recurrent and
current-based layers), run in :mod:`quant.graph`. The loss is the cross-entropy of the
output spike counts (or of the last membrane value with ``--readout membrane``).
Everything is seeded (``--seed``: data coding, initial weights, dropout, batch order),
so a run is repeatable on the same machine. After every epoch one line reports the
loss, the float test accuracy and the fixed-point test accuracy of the model that
:func:`quantize_net` would export with the chosen widths (computed with the
integer-exact torch mode, which agrees spike for spike with :mod:`sim.reference`).

The checkpoint (``OUT/checkpoint.pt``, see :func:`save_checkpoint`) holds the float
net in the :class:`quant.ir.FloatNet` layout (a graph: :class:`quant.graph.FloatGraph`),
the input settings, the data set settings and the training history; :mod:`quant.export`
turns it into a model directory and :mod:`quant.qat` fine-tunes it.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sim.model import INPUT, Synapse, chain_problem
from sim.registry import KINDS

from .data import DATASETS, DataError, default_input, load_dataset
from .graph import (FloatGraph, FloatGraphLayer, FloatSynapse, GraphNet, floatgraph_from_dict,
                    floatgraph_to_dict, quantize_graph)
from .ir import FloatLayer, FloatNet
from .kinds import torch_op
from .lif import SURROGATES, SpikingLayer, SpikingNet
from .ptq import quantize

__all__ = ["cli", "main", "ARCHS", "GRAPH_ARCHS", "build_net", "build_graph", "calibrate",
           "data_from_checkpoint", "net_from_checkpoint", "evaluate", "fit", "save_checkpoint",
           "load_checkpoint", "fixed_accuracy", "quantize_net", "integer_net"]

CHECKPOINT_FORMAT = "snn-fpga-checkpoint"
CHECKPOINT_VERSION = 1

#: Network topologies: lists of ``("conv2d", C_out, K, S, P)``, ``("sumpool2d", K)``,
#: ``("linear", N_out)``; the last layer's size is the number of classes.
ARCHS = {
    # small enough for an Arty A7-35: 1x8x8 -> 16x8x8 -> 16x4x4 -> 10 (2,704 weights)
    "digits": [("conv2d", 16, 3, 1, 1), ("sumpool2d", 2), ("linear", None)],
    # the 27.7k-neuron event-camera topology
    "gesture": [("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2), ("conv2d", 8, 3, 2, 1),
                ("conv2d", 16, 3, 2, 1), ("linear", None)],
    "nmnist": [("conv2d", 8, 5, 2, 2), ("conv2d", 16, 3, 2, 1), ("linear", None)],
    # the baseline of temporal_synth: the graph "temporal" without its skip, delays and
    # recurrence, about as many weights (16,072 against 16,472)
    "temporal_chain": [("conv2d", 8, 3, 2, 1), ("conv2d", 8, 3, 1, 1), ("conv2d", 8, 3, 1, 1),
                       ("sumpool2d", 2), ("conv2d", 16, 3, 1, 1), ("linear", 52),
                       ("linear", None)],
}

#: Graph topologies (contract version 2): one dict per layer, in evaluation order, with
#: ``name`` and ``synapses``, a list of ``[source, kind, options]`` (options: ``out``
#: channels or units for conv2d/linear (``None``: the number of classes), ``kernel``,
#: ``stride``, ``padding``, ``delay``, ``taps``); optional neuron settings ``beta``,
#: ``threshold``, ``reset``, ``spike_limit``, ``current_beta`` (a current-based layer),
#: ``dropout`` (training only). The first synapse sets the layer's shape. ``--arch``
#: also takes a JSON file holding such a list.
GRAPH_ARCHS = {
    # 2x16x16 -> conv 8x8x8 -> residual block (two convs, identity skip) -> sum pool
    # 8x4x4 -> conv with 5 taps (delays 0..4, learnt per tap) 16x4x4 -> recurrent
    # current-based 32 -> classes: 1,958 neurons, 16,472 weights
    "temporal": [
        {"name": "conv1", "synapses": [["input", "conv2d",
                                        {"out": 8, "kernel": 3, "stride": 2, "padding": 1}]]},
        {"name": "res1", "synapses": [["conv1", "conv2d", {"out": 8, "kernel": 3, "padding": 1}]],
         "dropout": 0.1},
        {"name": "res2", "synapses": [["res1", "conv2d", {"out": 8, "kernel": 3, "padding": 1}],
                                      ["conv1", "identity", {}]]},
        {"name": "pool", "synapses": [["res2", "sumpool2d", {"kernel": 2}]], "beta": 1.0},
        {"name": "taps", "synapses": [["pool", "conv2d", {"out": 16, "kernel": 3, "padding": 1,
                                                          "taps": 5}]], "dropout": 0.1},
        {"name": "rec", "synapses": [["taps", "linear", {"out": 32}],
                                     ["rec", "linear", {"out": 32, "delay": 1}]],
         "current_beta": 0.75},
        {"name": "out", "synapses": [["rec", "linear", {"out": None}]]},
    ],
}
_DEFAULT_ARCH = {"digits": "digits", "gesture_synth": "gesture", "dvs_gesture": "gesture",
                 "nmnist": "nmnist", "temporal_synth": "temporal"}
_DEFAULT_BETA = {"temporal_synth": 0.5}
_DEFAULTS = {   # per data set: epochs, lr, batch size, calibration rate
    "digits": dict(epochs=30, lr=1e-2, batch_size=32, calibrate=0.05),
    "gesture_synth": dict(epochs=25, lr=3e-3, batch_size=16, calibrate=0.0),
    "nmnist": dict(epochs=5, lr=2e-3, batch_size=64, calibrate=0.05),
    "dvs_gesture": dict(epochs=20, lr=2e-3, batch_size=16, calibrate=0.05),
    "temporal_synth": dict(epochs=40, lr=3e-3, batch_size=32, calibrate=0.05),
}


def build_net(arch, input_shape, n_classes, *, timesteps, dt_us=1000, count_clip=1,
              beta=0.875, threshold=1.0, reset="subtract", readout="spike_count",
              surrogate="fast_sigmoid", slope=5.0, bias=False, pool_threshold=1.0,
              init_gain=2.0, seed=0):
    """A :class:`quant.lif.SpikingNet` of topology ``arch`` (a name of :data:`ARCHS` or a
    list), or a :class:`quant.graph.GraphNet` for a graph topology (a name of
    :data:`GRAPH_ARCHS` or a list of layer dicts, see :func:`build_graph`)."""
    if (isinstance(arch, str) and arch in GRAPH_ARCHS) or \
            (isinstance(arch, list) and arch and isinstance(arch[0], dict)):
        return build_graph(arch, input_shape, n_classes, timesteps=timesteps, dt_us=dt_us,
                           count_clip=count_clip, beta=beta, threshold=threshold, reset=reset,
                           readout=readout, surrogate=surrogate, slope=slope, bias=bias,
                           pool_threshold=pool_threshold, init_gain=init_gain, seed=seed)
    spec = ARCHS[arch] if isinstance(arch, str) else arch
    torch.manual_seed(seed)
    layers = []
    shape = tuple(input_shape)
    counts = {}
    for i, item in enumerate(spec):
        kind = item[0]
        counts[kind] = counts.get(kind, 0) + 1
        name = {"conv2d": "conv", "sumpool2d": "pool", "linear": "fc"}[kind] + str(counts[kind])
        if kind == "conv2d":
            _, co, k, s, p = item
            layer = SpikingLayer(name, kind, shape, kernel=k, stride=s, padding=p,
                                 out_channels=co, bias=bias, beta=beta, threshold=threshold,
                                 reset=reset)
        elif kind == "sumpool2d":
            layer = SpikingLayer(name, kind, shape, kernel=item[1], beta=1.0,
                                 threshold=pool_threshold, reset=reset)
        else:
            n = n_classes if (i == len(spec) - 1 or item[1] is None) else item[1]
            layer = SpikingLayer(name, kind, shape, n_out=n, bias=bias, beta=beta,
                                 threshold=threshold, reset=reset)
        if layer.weight is not None:
            with torch.no_grad():
                layer.weight.mul_(init_gain)
        layers.append(layer)
        shape = layer.out_shape
    return SpikingNet(layers, input_shape, timesteps, dt_us, count_clip, readout,
                      surrogate=surrogate, slope=slope)


_SYN_OPTIONS = {"out", "kernel", "stride", "padding", "delay", "taps"}
_LAYER_OPTIONS = {"name", "synapses", "beta", "threshold", "reset", "spike_limit",
                  "current_beta", "dropout"}


def build_graph(arch, input_shape, n_classes, *, timesteps, dt_us=1000, count_clip=1,
                beta=0.875, threshold=1.0, reset="subtract", readout="spike_count",
                surrogate="fast_sigmoid", slope=5.0, bias=False, pool_threshold=1.0,
                init_gain=2.0, seed=0):
    """A :class:`quant.graph.GraphNet` of graph topology ``arch`` (a name of
    :data:`GRAPH_ARCHS` or a list of layer dicts in that form).

    Shapes follow from the synapse kinds' rules (:data:`sim.registry.KINDS`); weights
    are initialised by each kind's torch operator (identity synapses start at 1, a
    plain skip) and multiplied by ``init_gain``; layers whose synapses have no weights
    get ``beta`` 1 and ``pool_threshold`` unless they say otherwise.

    Raises
    ------
    ValueError
        Naming the layer and field, for an unknown kind, source or option, or shapes
        that do not agree.
    """
    spec = GRAPH_ARCHS[arch] if isinstance(arch, str) else arch
    if not isinstance(spec, list) or not spec:
        raise ValueError("a graph architecture is a non-empty list of layers")
    torch.manual_seed(seed)
    shapes = {INPUT: tuple(int(s) for s in input_shape)}
    names = [d.get("name") if isinstance(d, dict) else None for d in spec]
    layers = []
    for i, d in enumerate(spec):
        at = f"layers[{i}]"
        if not isinstance(d, dict):
            raise ValueError(f"{at}: expected an object, got {type(d).__name__}")
        unknown = set(d) - _LAYER_OPTIONS
        if unknown:
            raise ValueError(f"{at}: unknown key {sorted(unknown)[0]!r}")
        name = d.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name == INPUT \
                or names.count(name) > 1:
            raise ValueError(f"{at}.name: {name!r} is not a unique identifier")
        at = f"layer {name}"
        syns = d.get("synapses")
        if not isinstance(syns, list) or not syns:
            raise ValueError(f"{at}: synapses: expected a non-empty list")
        out_shape = None
        fsyns = []
        for j, item in enumerate(syns):
            ats = f"{at}: synapses[{j}]"
            if not (isinstance(item, (list, tuple)) and len(item) in (2, 3)):
                raise ValueError(f"{ats}: expected [source, kind, options]")
            src, kind = item[0], item[1]
            opt = dict(item[2]) if len(item) == 3 and item[2] else {}
            if kind not in KINDS:
                raise ValueError(f"{ats}: unknown synapse kind {kind!r}, expected one of "
                                 f"{', '.join(KINDS)}")
            if src != INPUT and src not in names:
                raise ValueError(f"{ats}: unknown source {src!r}")
            bad = set(opt) - _SYN_OPTIONS
            if bad:
                raise ValueError(f"{ats}: unknown option {sorted(bad)[0]!r}")
            if src == name or (src != INPUT and names.index(src) > i):
                if src not in shapes and out_shape is None:
                    raise ValueError(f"{ats}: a recurrent synapse cannot be the first")
                src_shape = out_shape if src == name else None
            else:
                src_shape = shapes[src]
            k = KINDS[kind]
            geo = {}
            if k.geometry:
                K = int(opt.get("kernel", 1))
                geo = dict(kernel=K, stride=int(opt.get("stride", K if kind == "sumpool2d"
                                                          else 1)),
                           padding=int(opt.get("padding", 0)))
            syn = Synapse(src, kind, delay=int(opt.get("delay", 0)),
                          taps=int(opt.get("taps", 1)), **geo)
            if src_shape is None:             # from a later layer: its shape is built below
                src_shape = ("later", src)
            fsyns.append((syn, src_shape, opt))
            if j == 0:
                in_shape = k.input_shape(src_shape)
                try:
                    k.check(syn, in_shape)
                except ValueError as e:
                    raise ValueError(f"{ats}: {e}") from None
                chans = opt.get("out") or (n_classes if i == len(spec) - 1 else None)
                out_shape = tuple(int(x) for x in k.out_shape(syn, in_shape, chans or 0))
                if out_shape[0] < 1:
                    raise ValueError(f"{ats}: needs 'out' (channels or units)")
        shapes[name] = out_shape
        layers.append((d, name, out_shape, fsyns))
    flayers = []
    for d, name, out_shape, fsyns in layers:
        out = []
        for j, (syn, src_shape, opt) in enumerate(fsyns):
            if isinstance(src_shape, tuple) and src_shape[:1] == ("later",):
                src_shape = shapes[src_shape[1]]
            k = KINDS[syn.type]
            in_shape = k.input_shape(src_shape)
            try:
                k.check(syn, in_shape)
            except ValueError as e:
                raise ValueError(f"layer {name}: synapses[{j}]: {e}") from None
            made = tuple(k.out_shape(syn, in_shape, out_shape[0]))
            if made != tuple(out_shape):
                raise ValueError(f"layer {name}: synapses[{j}]: makes shape {list(made)}, the "
                                 f"layer has {list(out_shape)}")
            op = torch_op(syn.type)
            wshape = k.weight_shape(syn, in_shape, out_shape)
            w = None
            if wshape is not None:
                t = torch.empty((syn.taps, *wshape) if syn.taps > 1 else wshape)
                op.init_weight(t)
                if syn.type != "identity":
                    t.mul_(init_gain)
                w = t.numpy().astype(np.float64)
            out.append(FloatSynapse(syn.source, syn.type, syn.kernel, syn.stride, syn.padding,
                                    w, syn.delay, syn.taps))
        weighted = all(torch_op(s.type).weighted for s in out)
        flayers.append(FloatGraphLayer(
            name=name, out_shape=out_shape, synapses=out,
            bias=np.zeros(out_shape[0]) if bias and weighted else None,
            beta=float(d.get("beta", beta if weighted else 1.0)),
            threshold=float(d.get("threshold", threshold if weighted else pool_threshold)),
            reset=d.get("reset", reset), spike_limit=int(d.get("spike_limit", 1)),
            current_beta=d.get("current_beta"), dropout=float(d.get("dropout", 0.0))))
    graph = FloatGraph(input_shape=tuple(input_shape), layers=flayers, timesteps=timesteps,
                       dt_us=dt_us, count_clip=count_clip, readout=readout)
    return GraphNet(graph, surrogate=surrogate, slope=slope)


def _layer_weights(layer):
    """The weight parameters of a chain or graph layer."""
    if isinstance(layer, SpikingLayer):
        return [] if layer.weight is None else [layer.weight]
    return layer.weights()


def n_weights(net):
    """Number of weights of a chain or graph net."""
    return sum(w.numel() for layer in net.layers for w in _layer_weights(layer))


def calibrate(net, x, *, target=0.05, target_out=0.1, iters=12):
    """Scale each weighted layer's initial weights until it fires at about ``target``.

    Sparse event inputs leave deep layers silent with a plain random init (no
    gradient flows through a layer that never comes near its threshold). Layer by
    layer, from the input, the weights are multiplied by a factor found by bisection
    on a log scale so that the mean spike rate (spikes per neuron per step) on the
    calibration batch ``x`` is close to ``target`` (``target_out`` for the output
    layer). Returns the factors.
    """
    factors = {}
    layers = list(net.layers)
    was_training = net.training
    net.eval()                                 # no dropout while measuring rates
    for i, layer in enumerate(layers):
        ws = _layer_weights(layer)
        if not ws or (net.readout == "membrane" and i == len(layers) - 1):
            continue                           # a membrane output never fires
        goal = target_out if i == len(layers) - 1 else target
        w0 = [w.detach().clone() for w in ws]
        lo, hi = -4.0, 4.0                     # log2 of the factor
        for _ in range(iters):
            mid = (lo + hi) / 2
            with torch.no_grad():
                for w, a in zip(ws, w0):
                    w.copy_(a * 2.0 ** mid)
                _, tr = net(x, record=True)
            rate = float(tr["spikes"][layer.name].float().mean())
            if rate < goal:
                lo = mid
            else:
                hi = mid
        f = 2.0 ** ((lo + hi) / 2)
        with torch.no_grad():
            for w, a in zip(ws, w0):
                w.copy_(a * f)
        factors[layer.name] = f
    net.train(was_training)
    return factors


# -- checkpoints ------------------------------------------------------------------------

def _t(a):
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    return float(a) if a.ndim == 0 else torch.as_tensor(a)


def _a(t):
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return t.numpy().astype(np.float64)
    return t


def floatnet_to_dict(net):
    """A :class:`FloatNet` (or :class:`quant.graph.FloatGraph`) as plain types and tensors
    (``torch.load(weights_only=True)``)."""
    if isinstance(net, FloatGraph):
        return floatgraph_to_dict(net)
    return {
        "input_shape": list(net.input_shape), "timesteps": net.timesteps, "dt_us": net.dt_us,
        "count_clip": net.count_clip, "readout": net.readout,
        "layers": [{"name": l.name, "type": l.type, "in_shape": list(l.in_shape),
                    "out_shape": list(l.out_shape), "kernel": l.kernel, "stride": l.stride,
                    "padding": l.padding, "weight": _t(l.weight), "bias": _t(l.bias),
                    "beta": _t(l.beta), "threshold": _t(l.threshold), "reset": l.reset}
                   for l in net.layers]}


def floatnet_from_dict(d):
    if d.get("kind") == "graph":
        return floatgraph_from_dict(d)
    layers = [FloatLayer(name=l["name"], type=l["type"], in_shape=tuple(l["in_shape"]),
                         out_shape=tuple(l["out_shape"]), kernel=l["kernel"],
                         stride=l["stride"], padding=l["padding"], weight=_a(l["weight"]),
                         bias=_a(l["bias"]), beta=_a(l["beta"]), threshold=_a(l["threshold"]),
                         reset=l["reset"]) for l in d["layers"]]
    return FloatNet(input_shape=tuple(d["input_shape"]), layers=layers,
                    timesteps=d["timesteps"], dt_us=d["dt_us"], count_clip=d["count_clip"],
                    readout=d["readout"])


def save_checkpoint(path, net: SpikingNet, *, dataset, train, history, quant, command,
                    qat=None):
    """Write a training checkpoint atomically.

    Layout (a dict readable with ``torch.load(path, weights_only=True)``)::

        format, version       "snn-fpga-checkpoint", 1
        floatnet              the FloatNet: input settings, readout, layers (tensors)
        surrogate, slope      the surrogate gradient used
        dataset               {"name", "seed", "kwargs", "root"}: how to rebuild the data
        train                 the training settings
        quant                 {"weight_bits", "state_bits", "per_channel", "beta_frac_bits"}
        qat                   the fine-tuning settings, or None
        history               one dict per epoch
        command               the command line that produced the checkpoint
    """
    doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
           "floatnet": floatnet_to_dict(net.to_floatnet()),
           "surrogate": net.surrogate, "slope": net.slope,
           "dataset": dataset, "train": train, "quant": quant, "qat": qat,
           "history": history, "command": command}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(doc, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (one line naming the file)."""


def load_checkpoint(path):
    """Read a checkpoint; returns the dict with ``floatnet`` as a :class:`FloatNet`."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint: {msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: version: this tool reads version {CHECKPOINT_VERSION},"
                              f" got {doc.get('version')!r}")
    try:
        doc["floatnet"] = floatnet_from_dict(doc["floatnet"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: floatnet: malformed ({e})") from None
    doc["path"] = str(path)
    return doc


def data_from_checkpoint(doc, split, *, root=None, limit=None):
    """The binned ``split`` of the data set a checkpoint was trained on.

    ``root`` and ``limit`` override the recorded ones (tonic data on another path, a
    quick evaluation on the first samples).
    """
    d = doc["dataset"]
    net = doc["floatnet"]
    limit = limit if limit is not None else d.get("limit")
    es = load_dataset(d["name"], split, seed=d["seed"], timesteps=net.timesteps,
                      dt_us=net.dt_us, root=root or d.get("root"), limit=limit,
                      **(d.get("kwargs") or {}))
    if tuple(es.shape) != tuple(net.input_shape):
        raise DataError(f"data set {d['name']} has shape {list(es.shape)}, the net's input "
                        f"is {list(net.input_shape)}")
    return es.bin(net.timesteps, net.dt_us, net.count_clip)


def net_from_checkpoint(doc):
    if isinstance(doc["floatnet"], FloatGraph):
        return GraphNet.from_floatnet(doc["floatnet"], surrogate=doc.get(
            "surrogate", "fast_sigmoid"), slope=doc.get("slope", 5.0))
    return SpikingNet.from_floatnet(doc["floatnet"], surrogate=doc.get("surrogate",
                                    "fast_sigmoid"), slope=doc.get("slope", 5.0))


# -- training ---------------------------------------------------------------------------

def evaluate(net, data, batch_size=64):
    """Predictions of ``net`` on a :class:`quant.data.BinnedSet` (arg-max, ties low)."""
    preds = []
    with torch.no_grad():
        for x, _ in data.batches(batch_size):
            scores = net(torch.from_numpy(x))
            preds.append(torch.argmax(scores, dim=1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def quantize_net(fnet, **qconfig):
    """:func:`quant.ptq.quantize` for a chain, :func:`quant.graph.quantize_graph` for a
    graph (``current_bits`` applies to graphs only)."""
    if isinstance(fnet, FloatGraph):
        return quantize_graph(fnet, **qconfig)
    qconfig.pop("current_bits", None)
    return quantize(fnet, **qconfig)


def integer_net(model):
    """The integer-mode torch net of ``model``: a chain's :class:`SpikingNet`, or a
    :class:`GraphNet` for anything else."""
    if chain_problem(model) is None:
        return SpikingNet.from_model(model)
    return GraphNet.from_model(model)


def fixed_accuracy(net, data, qconfig, batch_size=64):
    """Test accuracy of the model :func:`quantize_net` makes of ``net`` now."""
    model = quantize_net(net.to_floatnet(), **qconfig)
    inet = integer_net(model)
    pred = evaluate(inet, data, batch_size)
    return float((pred == data.labels).mean()), model


def _loss(net, scores, y):
    if net.readout == "spike_count":
        return F.cross_entropy(scores, y)
    return F.cross_entropy(scores / max(1e-6, float(net.layers[-1].threshold.max())), y)


def fit(net, train, test, *, epochs, lr, batch_size, seed, qconfig, max_steps=None,
        log=print, progress=True, desc="train"):
    """Train ``net`` in its current mode (float or fake_quant) with Adam.

    Returns the per-epoch history (loss, train accuracy, float and fixed test accuracy).
    """
    from tqdm import tqdm
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    n_batches = math.ceil(len(train) / batch_size)
    total = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
    history = []
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, file=sys.stderr,
               dynamic_ncols=True)
    for epoch in range(epochs):
        t0 = time.time()
        net.train()
        tot_loss, correct, seen = 0.0, 0, 0
        for x, y in train.batches(batch_size, shuffle=True, rng=rng):
            if max_steps is not None and step >= max_steps:
                break
            x = torch.from_numpy(x)
            y = torch.from_numpy(np.asarray(y, dtype=np.int64))
            scores = net(x)
            loss = _loss(net, scores.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot_loss += float(loss.detach()) * len(y)
            correct += int((scores.argmax(1) == y).sum())
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        net.eval()
        mode = net.mode
        if mode == "fake_quant":
            net.set_mode("float")
        pred = evaluate(net, test)
        acc_float = float((pred == test.labels).mean())
        net.set_mode(mode) if mode == "fake_quant" else None
        acc_fixed, _ = fixed_accuracy(net, test, qconfig)
        rec = {"epoch": epoch + 1, "loss": tot_loss / max(1, seen),
               "train_acc": correct / max(1, seen), "test_acc_float": acc_float,
               "test_acc_fixed": acc_fixed, "seconds": time.time() - t0, "steps": step}
        history.append(rec)
        qs = f"w{qconfig['weight_bits']}/s{qconfig['state_bits']}" + \
            ("/pc" if qconfig.get("per_channel") else "")
        msg = (f"epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}, train "
               f"{100 * rec['train_acc']:.2f}%, test float {100 * acc_float:.2f}%, "
               f"fixed ({qs}) {100 * acc_fixed:.2f}%  [{rec['seconds']:.0f} s]")
        if progress:
            bar.write(msg)
        else:
            log(msg)
        if max_steps is not None and step >= max_steps:
            break
    bar.close()
    return history


def command_line(argv, module):
    return " ".join(["python", "-m", module] + [shlex.quote(a) for a in argv])


def _parser():
    from sim.cli import ArgumentParser
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--out", required=True, help="run directory (gets checkpoint.pt)")
    p.add_argument("--root", help="directory holding tonic data sets (nmnist, dvs_gesture)")
    p.add_argument("--arch", help="topology: a chain (" + ", ".join(sorted(ARCHS)) + "), a "
                   "graph (" + ", ".join(sorted(GRAPH_ARCHS)) + ") or a JSON file holding a "
                   "graph (default: per data set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--limit", type=int, help="use only this many samples per split")
    p.add_argument("--timesteps", type=int)
    p.add_argument("--dt-us", type=int)
    p.add_argument("--count-clip", type=int)
    p.add_argument("--encoding", choices=["rate", "latency"], default="rate",
                   help="digits: event coding")
    p.add_argument("--beta", type=float, help="leak of the membrane (default 0.875; "
                   "temporal_synth 0.5)")
    p.add_argument("--threshold", type=float, default=1.0)
    p.add_argument("--reset", choices=["subtract", "zero", "none"], default="subtract")
    p.add_argument("--readout", choices=["spike_count", "membrane"], default="spike_count")
    p.add_argument("--bias", action="store_true", help="layers with a bias")
    p.add_argument("--surrogate", choices=sorted(SURROGATES), default="fast_sigmoid")
    p.add_argument("--slope", type=float, default=5.0)
    p.add_argument("--init-gain", type=float, default=2.0)
    p.add_argument("--calibrate", type=float, metavar="RATE",
                   help="scale initial weights so hidden layers fire at RATE spikes per "
                        "neuron and step on a training batch (0: off; default per data set)")
    p.add_argument("--weight-bits", type=int, default=8, help="widths of the fixed-point line")
    p.add_argument("--state-bits", type=int, default=16)
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest on small shared machines)")
    p.add_argument("--no-progress", action="store_true")
    return p


PROG = "python -m quant.train"


def _arch_spec(arch):
    """``--arch``: a name of :data:`ARCHS` or :data:`GRAPH_ARCHS`, or a JSON file."""
    if arch in ARCHS or arch in GRAPH_ARCHS:
        return arch
    from sim.cli import CliError
    path = Path(arch)
    if not path.is_file():
        raise CliError(f"--arch: {arch!r} is neither a known topology (" +
                       ", ".join(sorted(ARCHS) + sorted(GRAPH_ARCHS)) + ") nor a JSON file")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CliError(f"--arch: {path}: not a readable JSON file ({e})") from None
    if not (isinstance(spec, list) and spec and all(isinstance(d, dict) for d in spec)):
        raise CliError(f"--arch: {path}: expected a JSON list of layer objects")
    return spec


def _fail(msg):
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    d = default_input(args.dataset)
    T = args.timesteps if args.timesteps is not None else d["timesteps"]
    dt = args.dt_us if args.dt_us is not None else d["dt_us"]
    clip = args.count_clip if args.count_clip is not None else d["count_clip"]
    for what, v in (("--timesteps", T), ("--dt-us", dt), ("--count-clip", clip)):
        if v < 1:
            return _fail(f"{what}: expected a positive integer, got {v}")
    hp = dict(_DEFAULTS[args.dataset])
    if args.beta is None:
        args.beta = _DEFAULT_BETA.get(args.dataset, 0.875)
    for k in ("epochs", "lr", "batch_size", "calibrate"):
        if getattr(args, k) is not None:
            hp[k] = getattr(args, k)
    kw = {"encoding": args.encoding} if args.dataset == "digits" else {}
    try:
        train_set = load_dataset(args.dataset, "train", seed=args.seed, timesteps=T, dt_us=dt,
                                 root=args.root, limit=args.limit, **kw)
        test_set = load_dataset(args.dataset, "test", seed=args.seed, timesteps=T, dt_us=dt,
                                root=args.root, limit=args.limit, **kw)
        train = train_set.bin(T, dt, clip)
        test = test_set.bin(T, dt, clip)
    except DataError as e:
        return _fail(str(e))
    arch = args.arch or _DEFAULT_ARCH[args.dataset]
    arch_spec = _arch_spec(arch)
    try:
        net = build_net(arch_spec, train_set.shape, train_set.n_classes, timesteps=T,
                        dt_us=dt, count_clip=clip, beta=args.beta, threshold=args.threshold,
                        reset=args.reset, readout=args.readout, surrogate=args.surrogate,
                        slope=args.slope, bias=args.bias, init_gain=args.init_gain,
                        seed=args.seed)
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return _fail(f"--arch {arch}: {msg}")
    if hp["calibrate"] > 0:
        torch.manual_seed(args.seed)
        x, _ = train.frames(np.random.default_rng(args.seed).permutation(len(train))[:64])
        factors = calibrate(net, torch.from_numpy(x), target=hp["calibrate"],
                            target_out=min(0.5, 2 * hp["calibrate"]))
        print("initial weights scaled: " + ", ".join(f"{k} x{v:.2f}" for k, v in
                                                     factors.items()), flush=True)
    qconfig = dict(weight_bits=args.weight_bits, state_bits=args.state_bits,
                   per_channel=args.per_channel)
    try:
        quantize_net(net.to_floatnet(), **qconfig)
    except Exception as e:  # noqa: BLE001 - report bad widths before training
        return _fail(f"quantization settings: {e}")
    print(f"{args.dataset}: {len(train)} training / {len(test)} test samples, input "
          f"{list(train_set.shape)}, T={T}, dt={dt} us; net {arch}: "
          f"{sum(int(np.prod(l.out_shape)) for l in net.layers)} neurons, "
          f"{n_weights(net)} weights",
          flush=True)
    history = fit(net, train, test, epochs=hp["epochs"], lr=hp["lr"],
                  batch_size=hp["batch_size"], seed=args.seed, qconfig=qconfig,
                  max_steps=args.max_steps, progress=not args.no_progress)
    out = Path(args.out)
    dataset = {"name": args.dataset, "seed": args.seed, "kwargs": kw, "root": args.root,
               "limit": args.limit}
    train_cfg = {"arch": arch_spec, **hp, "max_steps": args.max_steps, "beta": args.beta,
                 "threshold": args.threshold, "reset": args.reset, "bias": args.bias,
                 "init_gain": args.init_gain, "torch": str(torch.__version__)}
    save_checkpoint(out / "checkpoint.pt", net, dataset=dataset, train=train_cfg,
                    history=history, quant={**qconfig, "beta_frac_bits": None},
                    command=command_line(argv, "quant.train"))
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    last = history[-1] if history else {}
    print(f"saved {out / 'checkpoint.pt'}: test float "
          f"{100 * last.get('test_acc_float', float('nan')):.2f}%, fixed "
          f"{100 * last.get('test_acc_fixed', float('nan')):.2f}%")
    return 0


def cli(argv=None):
    """``main`` with bad input reported as one line and exit status 2."""
    from sim.cli import main_guard
    return main_guard(main, argv, prog=PROG, errors=(DataError, CheckpointError))


if __name__ == "__main__":
    sys.exit(cli())
