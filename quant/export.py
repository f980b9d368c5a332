"""Export a trained checkpoint as a model directory: ``python -m quant.export``.

::

    python -m quant.export runs/digits/checkpoint.pt --out models/digits \\
        [--weight-bits 8] [--state-bits 16] [--per-channel] [--beta-frac-bits N]
        [--root DATA] [--limit N] [--backend auto|numpy|numba]

Steps: read the checkpoint (:mod:`quant.train`), quantize the float net
(:func:`quant.ptq.quantize` for a chain, :func:`quant.graph.quantize_graph` for a
graph), run the integer model through the bit-exact reference on
the checkpoint's test split and the float net in torch, and write, all at once (into
a temporary directory moved into place when complete):

- the model directory (:func:`sim.model.save_model`: ``model.json``, ``.npy`` arrays,
  ROM ``.hex`` images with checksums); ``model.meta`` records the export command, the
  training command, the data set and the accuracy summary;
- ``report.json`` and ``report.md`` (:mod:`quant.report`; the table is also printed);
- ``README.md`` with the commands that rebuild the directory;
- with ``--include-checkpoint``, a copy of the float checkpoint (``checkpoint.pt``),
  so that fine-tuning and benchmarks can start from the shipped model.

``--out`` is replaced whole, so it must be missing, empty or a previous output of this
command (marker file ``.snn-fpga-output``); a file or any other directory is refused
unless ``--force`` is given; the current directory, its parents and the directory that
holds the checkpoint are refused always (:mod:`sim.fsutil`).

Widths default to the ones the checkpoint was trained or fine-tuned for (8-bit
weights, 16-bit states unless ``quant.qat`` said otherwise). Bad input (a missing or
broken checkpoint, impossible widths, a data set that is not on disk) prints one line
and exits with status 2; nothing is written then.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from sim.cli import ArgumentParser, CliError, add_force_option, atomic_dir, main_guard
from sim.fsutil import check_output_dir
from sim.model import save_model

from .data import DataError
from .graph import FloatGraph
from .ir import NetImportError
from .report import evaluate, markdown
from .train import (CheckpointError, command_line, data_from_checkpoint, load_checkpoint,
                    net_from_checkpoint, quantize_net)

__all__ = ["main", "cli", "export"]

PROG = "python -m quant.export"


def _parser():
    p = ArgumentParser(prog=PROG, description="Quantize a checkpoint and write a model "
                       "directory with an accuracy report.")
    p.add_argument("checkpoint", help="checkpoint.pt from quant.train or quant.qat "
                   "(or its run directory)")
    p.add_argument("--out", required=True,
                   help="model directory to write; replaced whole when it is a previous "
                        "output of quant.export, refused otherwise (--force)")
    add_force_option(p)
    p.add_argument("--weight-bits", type=int, help="default: the checkpoint's (8)")
    p.add_argument("--state-bits", type=int, help="default: the checkpoint's (16)")
    p.add_argument("--per-channel", action="store_true", default=None,
                   help="one scale per output channel")
    p.add_argument("--beta-frac-bits", type=int, help="fraction width of the leak")
    p.add_argument("--name-prefix", help="prefix for layer names")
    p.add_argument("--root", help="data directory (tonic data sets)")
    p.add_argument("--limit", type=int, help="evaluate only this many test samples")
    p.add_argument("--backend", choices=["auto", "numpy", "numba"], default="auto")
    p.add_argument("--include-checkpoint", action="store_true",
                   help="copy the checkpoint into the model directory (checkpoint.pt)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true", help="do not print the report table")
    return p


def export(doc, out, *, weight_bits, state_bits, per_channel, beta_frac_bits=None,
           name_prefix=None, root=None, limit=None, backend="auto", command=None,
           progress=False, include_checkpoint=False, force=False):
    """Quantize checkpoint ``doc``, evaluate and write the model directory ``out``.

    ``out`` is replaced whole: it must be missing, empty or a previous output of this
    command unless ``force`` (:func:`sim.fsutil.check_output_dir`; never the directory
    that holds the checkpoint).

    Returns ``(model, report)``.
    """
    net = net_from_checkpoint(doc)
    net.eval()
    fnet = doc["floatnet"]
    ds = doc["dataset"]
    data = data_from_checkpoint(doc, "test", root=root, limit=limit)
    q = dict(weight_bits=weight_bits, state_bits=state_bits, per_channel=per_channel,
             beta_frac_bits=beta_frac_bits)
    if name_prefix is not None:
        if isinstance(fnet, FloatGraph):
            raise NetImportError("--name-prefix: a graph keeps its layer names (synapses "
                                 "name their sources)")
        q["name_prefix"] = name_prefix
    model = quantize_net(fnet, **q)
    report = evaluate(model, data, float_net=net, backend=backend, progress=progress)
    report["command"] = command
    report["dataset"] = (f"{ds['name']} (test split, {report['samples']} samples, seed "
                         f"{ds['seed']}" + (f", {ds['kwargs']}" if ds.get("kwargs") else "")
                         + ")")
    summary = {k: report.get(k) for k in ("samples", "float_accuracy", "fixed_accuracy",
                                          "agreement", "torch_integer_agreement",
                                          "synops_per_sample", "overflow_count")}
    model.meta = {
        **(model.meta or {}),
        "command": command,
        "checkpoint": {"path": doc.get("path"), "train_command": doc.get("command"),
                       "qat": doc.get("qat"), "history_last": (doc.get("history") or [None])[-1]},
        "dataset": {"name": ds["name"], "split": "test", "seed": ds["seed"],
                    "kwargs": ds.get("kwargs") or {}, "limit": limit or ds.get("limit")},
        "accuracy": summary,
        "spike_rate": {l["name"]: l["spike_rate"] for l in report["layers"]},
    }
    out = Path(out)
    protect = [doc["path"]] if doc.get("path") else []
    check_output_dir(out, PROG, force=force, protect=protect)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, command=PROG, force=force, protect=protect) as tmp:
        save_model(model, tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "report.md").write_text(markdown(report, f"{out.name}: export report"))
        (tmp / "README.md").write_text(_readme(out.name, doc, command, report))
        if include_checkpoint:
            shutil.copyfile(doc["path"], tmp / "checkpoint.pt")
    model.path = out
    return model, report


def _readme(name, doc, command, report):
    lines = [f"# Model `{name}`", "",
             "A model directory in the project's fixed-point format (docs/semantics.md):",
             "`model.json`, one `.npy` per array, ROM images (`*.weights.hex`).", "",
             "Rebuild (from the repository root):", "", "```"]
    if doc.get("qat") and doc["qat"].get("float_command"):
        lines.append(doc["qat"]["float_command"])
    if doc.get("command"):
        lines.append(doc["command"])
    hist = [h for h in (doc.get("history") or []) if isinstance(h, dict)]
    train_s = sum(h.get("seconds", 0) for h in hist if not h.get("qat"))
    qat_s = sum(h.get("seconds", 0) for h in hist if h.get("qat"))
    lines += [command or "", "```", "",
              f"Training took {train_s / 60:.1f} min on one CPU thread"
              + (f", fine-tuning {qat_s / 60:.1f} min" if qat_s else "")
              + " (sum of the epochs, evaluation included; the machine was shared, so an "
                "idle one is faster). Runs are seeded and repeat exactly on one machine.",
              "",
              f"Test accuracy: float {_pct(report.get('float_accuracy'))}, fixed point "
              f"{_pct(report.get('fixed_accuracy'))} (bit-exact reference, "
              f"{report['samples']} samples). Details: report.md, report.json.", ""]
    return "\n".join(lines)


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    # before the (long) evaluation: the output must be ours to replace
    check_output_dir(args.out, PROG, force=args.force, protect=[args.checkpoint])
    doc = load_checkpoint(args.checkpoint)
    q = doc.get("quant") or {}
    wb = args.weight_bits if args.weight_bits is not None else q.get("weight_bits", 8)
    sb = args.state_bits if args.state_bits is not None else q.get("state_bits", 16)
    pc = args.per_channel if args.per_channel is not None else q.get("per_channel", False)
    bf = args.beta_frac_bits if args.beta_frac_bits is not None else q.get("beta_frac_bits")
    if not 2 <= wb <= 16:
        raise CliError(f"--weight-bits: {wb} is outside 2..16")
    if not 2 <= sb <= 32:
        raise CliError(f"--state-bits: {sb} is outside 2..32")
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: expected a positive integer, got {args.limit}")
    command = command_line(argv, "quant.export")
    model, report = export(doc, args.out, weight_bits=wb, state_bits=sb, per_channel=bool(pc),
                           beta_frac_bits=bf, name_prefix=args.name_prefix, root=args.root,
                           limit=args.limit, backend=args.backend, command=command,
                           progress=not args.no_progress,
                           include_checkpoint=args.include_checkpoint, force=args.force)
    if not args.quiet:
        print(markdown(report, f"{Path(args.out).name}: export report"))
    print(f"wrote {args.out}: float {_pct(report.get('float_accuracy'))}, fixed "
          f"{_pct(report['fixed_accuracy'])}, agreement {_pct(report.get('agreement'))}")
    return 0


#: Exceptions that mean bad input (one line, exit status 2).
ERRORS = (CheckpointError, NetImportError, DataError)


def cli(argv=None):
    """``main`` with bad input reported as one line and exit status 2."""
    return main_guard(main, argv, prog=PROG, errors=ERRORS)


if __name__ == "__main__":
    sys.exit(cli())
