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

__all__ = ["model_to_nir", "graph_to_nir", "export_nir", "main"]

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

    from sim.model import chain_problem
    if chain_problem(model) is not None:
        return graph_to_nir(model, dt=dt, discretization=discretization)
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


# -- version-2 graphs --------------------------------------------------------------------

def _conv_node(syn, w, src_shape, bias, meta):
    import nir
    return nir.Conv2d(input_shape=tuple(int(s) for s in src_shape[1:]),
                      weight=w.astype(np.float64), stride=int(syn.stride),
                      padding=int(syn.padding), dilation=1, groups=1, bias=bias, metadata=meta)


def _linear_node(syn, w, src_shape, bias, meta):
    """An Affine, after a Flatten when the source is ``(C, H, W)``."""
    import nir
    node = nir.Affine(weight=w.astype(np.float64), bias=bias, metadata=meta)
    if len(src_shape) == 1:
        return node
    return [("_flatten", nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0)),
            ("", node)]


def _pool_node(syn, w, src_shape, bias, meta):
    import nir
    k = int(syn.kernel)
    return nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                         padding=np.array([0, 0]), metadata=meta)


def _identity_node(syn, w, src_shape, bias, meta):
    """A per-channel weight as a diagonal 1x1 convolution (or a diagonal Affine for
    1-D): every NIR tool reads it; the importer takes the diagonal back."""
    import nir
    d = np.diag(w.astype(np.float64))
    if len(src_shape) == 3:
        return nir.Conv2d(input_shape=tuple(int(s) for s in src_shape[1:]),
                          weight=d[:, :, None, None], stride=1, padding=0, dilation=1,
                          groups=1, bias=bias, metadata=meta)
    return nir.Affine(weight=d, bias=bias, metadata=meta)


#: The NIR node of one tap of each synapse kind: ``fn(syn, w, src_shape, bias, meta)``
#: returns a node, or a chain ``[(name_suffix, node), ...]`` ending in the weighted node
#: (attached to :data:`sim.registry.KINDS` as the ``"quant.nir_export"`` part).
NIR_PART = "quant.nir_export"


def _attach_parts():
    from sim.registry import KINDS
    for kind, fn in (("conv2d", _conv_node), ("linear", _linear_node),
                     ("sumpool2d", _pool_node), ("identity", _identity_node)):
        if not KINDS[kind].has_part(NIR_PART):
            KINDS[kind].attach(NIR_PART, fn)


_attach_parts()


def _neuron_node(layer, index, dt, discretization, readout_meta):
    import nir
    shape = tuple(int(s) for s in layer.out_shape)
    thr = layer.threshold_per_neuron().reshape(shape).astype(np.float64) - THRESHOLD_MARGIN
    beta = layer.beta_num / (1 << layer.beta_frac_bits)
    zeros = np.zeros(shape)
    meta = {"layer": layer.name, "index": int(index), "state_bits": int(layer.state_bits),
            "acc_bits": int(layer.acc_bits), "beta_num": int(layer.beta_num),
            "beta_frac_bits": int(layer.beta_frac_bits),
            "threshold_per_channel": bool(layer.threshold_per_channel),
            "reset": layer.reset, "spike_limit": int(layer.spike_limit),
            "has_bias": layer.bias is not None}
    if layer.v_min is not None:
        meta["v_min"] = int(layer.v_min)

    def tau(b):
        return math.inf if b == 1.0 else _tau(b, dt, discretization)

    def gain_inv(b):
        return 1.0 if b == 1.0 else 1.0 / (1.0 - b)
    if layer.current is not None:
        cur = layer.current
        alpha = cur.beta_num / (1 << cur.beta_frac_bits)
        meta.update(current_beta_num=int(cur.beta_num),
                    current_beta_frac_bits=int(cur.beta_frac_bits),
                    current_state_bits=int(cur.state_bits))
        return nir.CubaLIF(tau_syn=np.full(shape, tau(alpha)), tau_mem=np.full(shape, tau(beta)),
                           r=np.full(shape, gain_inv(beta)), v_leak=zeros, v_threshold=thr,
                           v_reset=zeros, w_in=np.full(shape, gain_inv(alpha)), metadata=meta)
    if beta == 1.0:
        return nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=zeros, metadata=meta)
    return nir.LIF(tau=np.full(shape, tau(beta)), r=np.full(shape, gain_inv(beta)),
                   v_leak=zeros, v_threshold=thr, v_reset=zeros, metadata=meta)


def graph_to_nir(model: Model, *, dt=None, discretization="euler"):
    """The NIR graph of any version-2 model (see the module docstring).

    Every layer is a neuron node named after it; every tap ``j`` of synapse ``s`` is
    a path ``source -> [Delay] -> [Flatten] -> op -> layer`` whose ``Delay`` holds
    ``delay + j`` steps (in seconds, for every position of the source); recurrent
    synapses are cycles through such a ``Delay``. The layer's bias rides on its first
    conv/linear/identity node (or on a zero-weight ``Affine`` from the input marked
    ``bias_only`` when it has none). Returns ``(graph, warnings)``.
    """
    import nir

    from sim.model import INPUT
    from sim.registry import KINDS
    if discretization not in ("euler", "exp"):
        raise ValueError(f"discretization {discretization!r} is not 'euler' or 'exp'")
    dt = model.input.dt_us * 1e-6 if dt is None else float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt {dt!r} must be a positive number of seconds")
    names = {layer.name for layer in model.layers}
    in_name = "input" if "input" not in names else "input_"
    out_name = "output" if "output" not in names else "output_"
    nodes = {in_name: nir.Input(np.array(model.input.shape))}
    edges = []
    warnings = []
    for i, layer in enumerate(model.layers):
        n = layer.name
        bias_left = layer.bias is not None
        for j, syn in enumerate(layer.synapses):
            src = model.source_of(i, syn)
            src_node = in_name if src == INPUT else src
            src_shape = model.source_shape(src)
            part = KINDS[syn.type].part(NIR_PART)
            for t in range(syn.taps):
                base = f"{n}__s{j}t{t}"
                meta = {"layer": n, "synapse": j, "tap": t, "taps": int(syn.taps),
                        "delay": int(syn.delay), "kind": syn.type}
                if syn.weight_bits is not None:
                    meta["weight_bits"] = int(syn.weight_bits)
                if syn.scale is not None:
                    meta["scale"] = float(syn.scale)
                prev = src_node
                steps = syn.delay + t
                if steps:
                    nodes[f"{base}_delay"] = nir.Delay(np.full(src_shape, steps * dt))
                    edges.append((prev, f"{base}_delay"))
                    prev = f"{base}_delay"
                bias = None
                if syn.weights is not None:
                    bias = np.zeros(layer.c_out)
                    if bias_left:
                        bias = layer.bias.astype(np.float64)
                        bias_left = False
                made = part(syn, syn.tap_weights(t), src_shape, bias, meta)
                for suffix, node in (made if isinstance(made, list) else [("", made)]):
                    nodes[base + suffix] = node
                    edges.append((prev, base + suffix))
                    prev = base + suffix
                edges.append((prev, n))
        if bias_left:
            n_in = int(np.prod(model.input.shape))
            nodes[f"{n}__bias_flatten"] = nir.Flatten(
                input_type={"input": np.array(model.input.shape)}, start_dim=0)
            nodes[f"{n}__bias"] = nir.Affine(weight=np.zeros((layer.c_out, n_in)),
                                             bias=layer.bias.astype(np.float64),
                                             metadata={"layer": n, "bias_only": True})
            edges += [(in_name, f"{n}__bias_flatten"), (f"{n}__bias_flatten", f"{n}__bias"),
                      (f"{n}__bias", n)]
            warnings.append(f"layer {n}: its bias has no conv/linear synapse to ride on; "
                            f"written on a zero-weight Affine from the input (bias_only)")
        nodes[n] = _neuron_node(layer, i, dt, discretization, model.readout)
        if layer.reset != "zero":
            warnings.append(f"layer {n}: reset {layer.reset!r} has no NIR equivalent; written "
                            f"as v_reset=0 with metadata reset={layer.reset!r}")
        if not layer.is_plain:
            warnings.append(f"layer {n}: spike_limit/v_min are carried in metadata only")
    last = model.layers[-1]
    nodes[out_name] = nir.Output(np.array(last.out_shape))
    edges.append((last.name, out_name))
    gmeta = {"producer": "quant.nir_export", "format": "snn-fixed-point", "version": 2,
             "dt": dt, "discretization": discretization,
             "timesteps": int(model.input.timesteps), "dt_us": int(model.input.dt_us),
             "count_clip": int(model.input.count_clip), "readout": model.readout}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta, type_check=False), warnings


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
