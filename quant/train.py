"""Train a spiking CNN on an event data set: ``python -m quant.train``.

::

    python -m quant.train --dataset digits --out runs/digits
    python -m quant.train --dataset gesture_synth --out runs/gesture --epochs 12
    python -m quant.train --dataset nmnist --root ~/data --out runs/nmnist

The net (:data:`ARCHS`, one per data set unless ``--arch`` says otherwise) runs step by
step through time in :mod:`quant.lif`; the loss is the cross-entropy of the output
spike counts (or of the last membrane value with ``--readout membrane``). Everything
is seeded (``--seed``: data coding, initial weights, batch order), so a run is
repeatable on the same machine. After every epoch one line reports the loss, the
float test accuracy and the fixed-point test accuracy of the model that
:func:`quant.ptq.quantize` would export with the chosen widths (computed with the
integer-exact torch mode, which agrees spike for spike with :mod:`sim.reference`).

The checkpoint (``OUT/checkpoint.pt``, see :func:`save_checkpoint`) holds the float
net in the :class:`quant.ir.FloatNet` layout, the input settings, the data set
settings and the training history; :mod:`quant.export` turns it into a model
directory and :mod:`quant.qat` fine-tunes it.
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

from .data import DATASETS, DataError, default_input, load_dataset
from .ir import FloatLayer, FloatNet
from .lif import SURROGATES, SpikingLayer, SpikingNet
from .ptq import quantize

__all__ = ["cli", "main", "ARCHS", "build_net", "calibrate", "data_from_checkpoint",
           "net_from_checkpoint", "evaluate", "fit", "save_checkpoint", "load_checkpoint",
           "fixed_accuracy"]

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
}
_DEFAULT_ARCH = {"digits": "digits", "gesture_synth": "gesture", "dvs_gesture": "gesture",
                 "nmnist": "nmnist"}
_DEFAULTS = {   # per data set: epochs, lr, batch size, calibration rate
    "digits": dict(epochs=30, lr=1e-2, batch_size=32, calibrate=0.05),
    "gesture_synth": dict(epochs=25, lr=3e-3, batch_size=16, calibrate=0.0),
    "nmnist": dict(epochs=5, lr=2e-3, batch_size=64, calibrate=0.05),
    "dvs_gesture": dict(epochs=20, lr=2e-3, batch_size=16, calibrate=0.05),
}


def build_net(arch, input_shape, n_classes, *, timesteps, dt_us=1000, count_clip=1,
              beta=0.875, threshold=1.0, reset="subtract", readout="spike_count",
              surrogate="fast_sigmoid", slope=5.0, bias=False, pool_threshold=1.0,
              init_gain=2.0, seed=0):
    """A :class:`quant.lif.SpikingNet` of topology ``arch`` (a name or a list)."""
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
    for i, layer in enumerate(layers):
        if layer.weight is None or (net.readout == "membrane" and i == len(layers) - 1):
            continue                           # a membrane output never fires
        goal = target_out if i == len(layers) - 1 else target
        w0 = layer.weight.detach().clone()
        lo, hi = -4.0, 4.0                     # log2 of the factor
        for _ in range(iters):
            mid = (lo + hi) / 2
            with torch.no_grad():
                layer.weight.copy_(w0 * 2.0 ** mid)
                _, tr = net(x, record=True)
            rate = float(tr["spikes"][layer.name].float().mean())
            if rate < goal:
                lo = mid
            else:
                hi = mid
        f = 2.0 ** ((lo + hi) / 2)
        with torch.no_grad():
            layer.weight.copy_(w0 * f)
        factors[layer.name] = f
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


def floatnet_to_dict(net: FloatNet):
    """A :class:`FloatNet` as plain types and tensors (``torch.load(weights_only=True)``)."""
    return {
        "input_shape": list(net.input_shape), "timesteps": net.timesteps, "dt_us": net.dt_us,
        "count_clip": net.count_clip, "readout": net.readout,
        "layers": [{"name": l.name, "type": l.type, "in_shape": list(l.in_shape),
                    "out_shape": list(l.out_shape), "kernel": l.kernel, "stride": l.stride,
                    "padding": l.padding, "weight": _t(l.weight), "bias": _t(l.bias),
                    "beta": _t(l.beta), "threshold": _t(l.threshold), "reset": l.reset}
                   for l in net.layers]}


def floatnet_from_dict(d):
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


def fixed_accuracy(net, data, qconfig, batch_size=64):
    """Test accuracy of the model :func:`quant.ptq.quantize` makes of ``net`` now."""
    model = quantize(net.to_floatnet(), **qconfig)
    inet = SpikingNet.from_model(model)
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
    p.add_argument("--arch", choices=sorted(ARCHS), help="topology (default: per data set)")
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
    p.add_argument("--beta", type=float, default=0.875)
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
    net = build_net(arch, train_set.shape, train_set.n_classes, timesteps=T, dt_us=dt,
                    count_clip=clip, beta=args.beta, threshold=args.threshold,
                    reset=args.reset, readout=args.readout, surrogate=args.surrogate,
                    slope=args.slope, bias=args.bias, init_gain=args.init_gain, seed=args.seed)
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
        quantize(net.to_floatnet(), **qconfig)
    except Exception as e:  # noqa: BLE001 - report bad widths before training
        return _fail(f"quantization settings: {e}")
    print(f"{args.dataset}: {len(train)} training / {len(test)} test samples, input "
          f"{list(train_set.shape)}, T={T}, dt={dt} us; net {arch}: "
          f"{sum(int(np.prod(l.out_shape)) for l in net.layers)} neurons, "
          f"{sum(l.weight.numel() for l in net.layers if l.weight is not None)} weights",
          flush=True)
    history = fit(net, train, test, epochs=hp["epochs"], lr=hp["lr"],
                  batch_size=hp["batch_size"], seed=args.seed, qconfig=qconfig,
                  max_steps=args.max_steps, progress=not args.no_progress)
    out = Path(args.out)
    dataset = {"name": args.dataset, "seed": args.seed, "kwargs": kw, "root": args.root,
               "limit": args.limit}
    train_cfg = {"arch": arch, **hp, "max_steps": args.max_steps, "beta": args.beta,
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
