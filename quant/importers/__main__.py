"""``python -m quant.importers snntorch|sinabs|nir FILE --out models/NAME [options]``.

``snntorch``: FILE is a ``state_dict`` (``torch.save(net.state_dict(), FILE)``) with
``--builder ARCH.py`` (its ``build()`` returns the ``nn.Sequential``), a ``.py`` file whose
``build()`` returns the trained net, or a whole pickled ``nn.Sequential``
(:func:`quant.importers.snntorch.load_sequential`; files are executed/unpickled: only
import files you trust); ``--input-shape P,H,W`` and ``--timesteps`` are required
because the module does not record them.

``sinabs``: FILE as for ``snntorch``, a sinabs ``nn.Sequential``
(:mod:`quant.importers.sinabs`).

``nir``: FILE is a NIR graph (``nir.write``); LIF nodes need ``--dt`` (seconds) and
``--discretization euler|exp`` unless the graph's metadata records them (graphs from
``python -m quant.nir_export`` do). Graphs with branches, joins, recurrence, delays or
current-based nodes become version-2 models (:mod:`quant.importers.nir_graph`);
``--if-flavor sinabs`` reads IF nodes as sinabs' multi-spike IAF neurons.

The choices made (integer or float mode, discretization, folded poolings, strict
compares) are printed and stored in ``model.json``'s ``meta.import``. Bad input is one
line on stderr with exit status 2 and nothing written.

``--out`` is replaced whole, so it must be missing, empty or a previous output of this
command (marker file ``.snn-fpga-output``); a file or any other directory is refused
unless ``--force`` is given; the current directory, its parents and a directory that
holds FILE or ``--builder`` are refused always (:mod:`sim.fsutil`).
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

from sim.cli import ArgumentParser, CliError, add_force_option, atomic_dir, run_main
from sim.fsutil import check_output_dir

from . import NetImportError

PROG = "python -m quant.importers"


def _shape(text):
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise CliError(f"--input-shape: {text!r} is not P,H,W") from None
    if len(shape) != 3 or min(shape) < 1:
        raise CliError(f"--input-shape: {text!r} is not three positive integers P,H,W")
    return shape


def _mode(text):
    return {"auto": None, "integer": True, "float": False}[text]


def main(argv=None):
    ap = ArgumentParser(prog=PROG, description="Import an snnTorch, sinabs or NIR network as a "
                        "model directory.")
    sub = ap.add_subparsers(dest="source", required=True)
    common = ArgumentParser(add_help=False)
    common.add_argument("file")
    common.add_argument("--out", required=True,
                        help="model directory to write; replaced whole when it is a previous "
                             "output of quant.importers, refused otherwise (--force)")
    add_force_option(common)
    common.add_argument("--weight-bits", type=int, default=None,
                        help="weight width (default: the smallest exact width in integer "
                             "mode, else 8)")
    common.add_argument("--state-bits", type=int, default=None, help="state width (16)")
    common.add_argument("--beta-frac-bits", type=int, default=None)
    common.add_argument("--mode", choices=("auto", "integer", "float"), default="auto",
                        help="integer: exact (integer weights); float: the quantizer "
                             "chooses scales; auto: integer when the weights are integers")
    common.add_argument("--timesteps", type=int, default=None)
    common.add_argument("--dt-us", type=int, default=None)
    common.add_argument("--count-clip", type=int, default=None)
    s = sub.add_parser("snntorch", parents=[common], help="torch.save'd nn.Sequential")
    s.add_argument("--input-shape", required=True, help="P,H,W")
    s.add_argument("--builder", default=None,
                   help="Python file whose build() returns the nn.Sequential (for a "
                        "state_dict FILE)")
    s.add_argument("--readout", choices=("spike_count", "membrane"), default="spike_count")
    sb = sub.add_parser("sinabs", parents=[common], help="torch.save'd sinabs nn.Sequential")
    sb.add_argument("--input-shape", required=True, help="P,H,W")
    sb.add_argument("--builder", default=None,
                    help="Python file whose build() returns the nn.Sequential (for a "
                         "state_dict FILE)")
    n = sub.add_parser("nir", parents=[common], help="NIR graph file")
    n.add_argument("--dt", type=float, default=None, help="step in seconds")
    n.add_argument("--discretization", choices=("euler", "exp"), default=None)
    n.add_argument("--if-gain", choices=("r", "r_dt"), default="r")
    n.add_argument("--if-flavor", choices=("nir", "sinabs"), default="nir",
                   help="how IF nodes fire: nir (one spike, v > threshold, reset to 0) or "
                        "sinabs (IAF: floor(v/threshold) spikes, subtract, v >= -threshold); "
                        "recorded in meta.import")
    args = ap.parse_args(argv)

    for key in ("timesteps", "dt_us", "count_clip", "weight_bits", "state_bits"):
        v = getattr(args, key)
        if v is not None and v < 1:
            raise CliError(f"--{key.replace('_', '-')}: {v} must be positive")
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    protect = [path] + ([args.builder] if getattr(args, "builder", None) else [])
    check_output_dir(out, PROG, force=args.force, protect=protect)     # before the import
    integer = _mode(args.mode)
    if args.source == "snntorch":
        from .snntorch import import_snntorch_model, load_sequential
        if args.timesteps is None:
            raise CliError("--timesteps is required for snntorch files")
        net = load_sequential(path, args.builder)
        model = import_snntorch_model(
            net, _shape(args.input_shape), timesteps=args.timesteps,
            dt_us=args.dt_us or 1000, count_clip=args.count_clip or 1, integer=integer,
            readout=args.readout, weight_bits=args.weight_bits, state_bits=args.state_bits,
            beta_frac_bits=args.beta_frac_bits, where=str(path))
    elif args.source == "sinabs":
        from .sinabs import import_sinabs
        from .snntorch import load_sequential
        if args.timesteps is None:
            raise CliError("--timesteps is required for sinabs files")
        model = import_sinabs(load_sequential(path, args.builder), _shape(args.input_shape),
                              timesteps=args.timesteps, dt_us=args.dt_us or 1000,
                              count_clip=args.count_clip or 1, integer=integer,
                              weight_bits=args.weight_bits, state_bits=args.state_bits,
                              where=str(path))
    else:
        from .nir import model_from_nir
        if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
            raise CliError(f"--dt: {args.dt!r} must be a positive number of seconds")
        model = model_from_nir(path, dt=args.dt, discretization=args.discretization,
                               if_gain=args.if_gain, if_flavor=args.if_flavor,
                               timesteps=args.timesteps,
                               dt_us=args.dt_us, count_clip=args.count_clip, integer=integer,
                               weight_bits=args.weight_bits, state_bits=args.state_bits,
                               beta_frac_bits=args.beta_frac_bits, where=str(path))
    model.meta = dict(model.meta or {})
    model.meta["command"] = " ".join([PROG] + [shlex.quote(a) for a in
                                               (sys.argv[1:] if argv is None else argv)])
    from sim.model import save_model
    with atomic_dir(out, command=PROG, force=args.force, protect=protect) as tmp:
        save_model(model, tmp)
    imp = model.meta.get("import", {})
    print(f"imported {path} -> {out}: {len(model.layers)} layers, {imp.get('mode')} mode")
    for note in imp.get("notes", []):
        print(f"  {note}")
    for layer in model.layers:
        kinds = "+".join(f"{s.type}({s.source})" for s in layer.synapses)
        print(f"  {layer.name}: {kinds} -> {list(layer.out_shape)}, "
              f"beta {layer.beta_num}/2^{layer.beta_frac_bits}, threshold "
              f"{sorted(set(layer.threshold.tolist()))}, reset {layer.reset}")
    return 0


if __name__ == "__main__":
    run_main(main, prog=PROG, errors=(NetImportError,))
