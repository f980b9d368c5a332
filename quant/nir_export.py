"""Export a model directory as a NIR graph (``python -m quant.nir_export``).

Every contract layer becomes a synaptic node followed by a neuron node::

    conv2d    -> nir.Conv2d (integer weights as floats, stride, padding, bias)
    linear    -> nir.Flatten (after a (C, H, W) layer) + nir.Affine
    sumpool2d -> nir.SumPool2d (kernel = stride, no padding)
    neurons   -> nir.LIF (beta < 1) or nir.IF (beta = 1)

Neuron parameters (arrays of the layer's output shape, so NIR's type check passes):

* ``beta = num / 2**frac`` becomes ``tau`` for the step ``dt`` (seconds, default the
  model's ``dt_us``): ``tau = dt / (1 - beta)`` (``euler``, the default and snnTorch's
  convention) or ``tau = -dt / ln(beta)`` (``exp``); ``beta = 0`` gives ``tau = dt``
  (euler) or ``tau = 0`` (exp);
* ``r = 1 / (1 - beta)`` so that the input gain ``r (1 - beta)`` of
  :mod:`quant.importers.nir` is 1 (IF: ``r = 1``, the per-step convention);
  ``v_leak = 0``;
* ``v_threshold = threshold - 2**-8``: NIR fires on ``v > v_threshold``, the contract
  on ``v >= threshold``; for integer membranes both agree, and the importer maps it
  back to ``floor(v_threshold) + 1 = threshold``;
* ``v_reset = 0``. NIR 1.0 knows only reset-to-value: layers with reset ``subtract``
  or ``none`` are written with ``v_reset = 0`` and ``metadata["reset"]`` naming the
  real reset. A tool that ignores the metadata resets those layers to zero instead;
  the exporter reports each such layer.

The graph's metadata records ``dt``, the discretization, the input settings and the
readout; each node's metadata records the layer name, widths, ``acc_bits`` and the
leak fraction, so that ``python -m quant.importers nir`` rebuilds the identical model.
Integer rounding (``(v * num) >> frac``, clamping to ``state_bits``) is not part of
NIR: float simulators match the model where membranes stay integers and in range.
"""

from __future__ import annotations

import math

import numpy as np

from sim.model import Model, load_model

__all__ = ["model_to_nir", "export_nir", "main"]

THRESHOLD_MARGIN = 2.0 ** -8


def _tau(beta, dt, discretization):
    if discretization == "euler":
        return dt / (1.0 - beta)
    if beta == 0:
        return 0.0
    return -dt / math.log(beta)


def model_to_nir(model: Model, *, dt=None, discretization="euler"):
    """Build the NIR graph of a model.

    Parameters
    ----------
    model : sim.model.Model
    dt : float or None
        Step in seconds; default ``model.input.dt_us * 1e-6``.
    discretization : {"euler", "exp"}

    Returns
    -------
    graph : nir.NIRGraph
    warnings : list of str
        Layers whose reset NIR cannot express (carried in metadata).
    """
    import nir
    if discretization not in ("euler", "exp"):
        raise ValueError(f"discretization {discretization!r} is not 'euler' or 'exp'")
    dt = model.input.dt_us * 1e-6 if dt is None else float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt {dt!r} must be a positive number of seconds")
    nodes = {"input": nir.Input(np.array(model.input.shape))}
    order = ["input"]
    warnings = []
    prev_shape = tuple(model.input.shape)
    for layer in model.layers:
        n = layer.name
        meta = {"layer": n, "state_bits": int(layer.state_bits), "acc_bits": int(layer.acc_bits),
                "beta_num": int(layer.beta_num), "beta_frac_bits": int(layer.beta_frac_bits),
                "threshold_per_channel": bool(layer.threshold_per_channel),
                "reset": layer.reset}
        if layer.weight_bits is not None:
            meta["weight_bits"] = int(layer.weight_bits)
        if layer.scale is not None:
            meta["scale"] = float(layer.scale)
        if layer.type == "conv2d":
            bias = (np.zeros(layer.c_out) if layer.bias is None
                    else layer.bias.astype(np.float64))
            syn = nir.Conv2d(input_shape=tuple(int(s) for s in layer.in_shape[1:]),
                             weight=layer.weights.astype(np.float64), stride=layer.stride,
                             padding=layer.padding, dilation=1, groups=1, bias=bias,
                             metadata={"layer": n})
        elif layer.type == "linear":
            if len(prev_shape) == 3:
                nodes[f"{n}_flatten"] = nir.Flatten(input_type={"input": np.array(prev_shape)},
                                                    start_dim=0)
                order.append(f"{n}_flatten")
            bias = (np.zeros(layer.n_out) if layer.bias is None
                    else layer.bias.astype(np.float64))
            syn = nir.Affine(weight=layer.weights.astype(np.float64), bias=bias,
                             metadata={"layer": n})
        else:
            k = int(layer.kernel)
            syn = nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                                padding=np.array([0, 0]), metadata={"layer": n})
        nodes[n] = syn
        order.append(n)
        shape = tuple(int(s) for s in layer.out_shape)
        thr = layer.threshold_per_neuron().reshape(shape).astype(np.float64) - THRESHOLD_MARGIN
        beta = layer.beta_num / (1 << layer.beta_frac_bits)
        zeros = np.zeros(shape)
        if beta == 1.0:
            neuron = nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=zeros, metadata=meta)
        else:
            tau = _tau(beta, dt, discretization)
            neuron = nir.LIF(tau=np.full(shape, tau), r=np.full(shape, 1.0 / (1.0 - beta)),
                             v_leak=zeros, v_threshold=thr, v_reset=zeros, metadata=meta)
        if layer.reset != "zero":
            warnings.append(f"layer {n}: reset {layer.reset!r} has no NIR equivalent; written "
                            f"as v_reset=0 with metadata reset={layer.reset!r}")
        nodes[f"{n}_neuron"] = neuron
        order.append(f"{n}_neuron")
        prev_shape = shape
    nodes["output"] = nir.Output(np.array(prev_shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    gmeta = {"producer": "quant.nir_export", "format": "snn-fixed-point", "dt": dt,
             "discretization": discretization, "timesteps": int(model.input.timesteps),
             "dt_us": int(model.input.dt_us), "count_clip": int(model.input.count_clip),
             "readout": model.readout}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta)
    return graph, warnings


def export_nir(model, path, *, dt=None, discretization="euler"):
    """Write ``model`` (a Model or a model directory) to ``path`` with ``nir.write``.

    The file is written next to ``path`` and moved into place when complete; it may
    replace an existing file, never a file of the model directory.
    Returns the warnings of :func:`model_to_nir`.
    """
    import nir

    from sim.cli import atomic_path
    protect = [] if isinstance(model, Model) else [model]
    if isinstance(model, Model) and model.path is not None:
        protect = [model.path]
    if not isinstance(model, Model):
        model = load_model(model)
    graph, warnings = model_to_nir(model, dt=dt, discretization=discretization)
    with atomic_path(path, protect=protect, what="--out") as tmp:
        nir.write(str(tmp), graph)
    return warnings


def main(argv=None):
    from pathlib import Path

    from sim.cli import ArgumentParser, CliError
    ap = ArgumentParser(prog="python -m quant.nir_export",
                        description="Write a model directory as a NIR graph (.nir).")
    ap.add_argument("model", help="model directory (model.json)")
    ap.add_argument("--out", required=True, help="output .nir file")
    ap.add_argument("--dt", type=float, default=None,
                    help="step in seconds (default: the model's dt_us)")
    ap.add_argument("--discretization", choices=("euler", "exp"), default="euler",
                    help="how beta becomes tau (default euler: tau = dt / (1 - beta))")
    args = ap.parse_args(argv)
    if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
        raise CliError(f"--dt: {args.dt!r} must be a positive number of seconds")
    if not Path(args.model).is_dir():
        raise CliError(f"{args.model}: not a model directory")
    warnings = export_nir(args.model, args.out, dt=args.dt, discretization=args.discretization)
    for w in warnings:
        print(f"warning: {w}")
    print(f"wrote {args.out} ({args.discretization}, dt "
          f"{args.dt if args.dt is not None else 'from the model'})")
    return 0


if __name__ == "__main__":
    from sim.cli import run_main
    run_main(main, prog="python -m quant.nir_export")
