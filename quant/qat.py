"""Quantization-aware fine-tuning of a float checkpoint: ``python -m quant.qat``.

::

    python -m quant.qat runs/digits/checkpoint.pt --out runs/digits_w4 --weight-bits 4 \\
        [--state-bits 16] [--per-channel] [--epochs 5] [--lr 1e-3] [--max-steps N]

The net runs in the ``fake_quant`` mode of :mod:`quant.lif` (a chain) or
:mod:`quant.graph` (a graph): every forward pass
quantizes the current float parameters exactly as :func:`quant.ptq.quantize` does and
computes in integer units with the hardware's clamping and floor leak, so the loss is
that of the model the export will write; rounding, clamping and the floor pass
gradients straight through. Before the first epoch the post-training-quantization
accuracy of the checkpoint is printed, then one line per epoch (float and fixed test
accuracy). The result is a checkpoint that :mod:`quant.export` exports with the same
widths (recorded in it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from sim.cli import ArgumentParser, CliError, main_guard

from .data import DataError
from .ir import NetImportError
from .train import (CheckpointError, command_line, data_from_checkpoint, fit,
                    fixed_accuracy, load_checkpoint, net_from_checkpoint, quantize_net,
                    save_checkpoint)

__all__ = ["main", "cli", "finetune"]

PROG = "python -m quant.qat"


def finetune(doc, *, qconfig, epochs=5, lr=1e-3, batch_size=None, seed=0, max_steps=None,
             root=None, limit=None, progress=True, log=print):
    """Fine-tune checkpoint ``doc`` in fake-quant mode.

    Returns ``(net, history, ptq_accuracy)``.
    """
    net = net_from_checkpoint(doc)
    train = data_from_checkpoint(doc, "train", root=root, limit=limit)
    test = data_from_checkpoint(doc, "test", root=root, limit=limit)
    quantize_net(net.to_floatnet(), **qconfig)      # fail early on impossible widths
    ptq_acc, _ = fixed_accuracy(net, test, qconfig)
    log(f"before fine-tuning: post-training quantization ({_qs(qconfig)}) "
        f"{100 * ptq_acc:.2f}%")
    net.set_mode("fake_quant", **qconfig)
    bs = batch_size or doc.get("train", {}).get("batch_size", 32)
    history = fit(net, train, test, epochs=epochs, lr=lr, batch_size=bs, seed=seed,
                  qconfig=qconfig, max_steps=max_steps, progress=progress, log=log,
                  desc="qat")
    net.set_mode("float")
    return net, history, ptq_acc


def _qs(q):
    return f"w{q['weight_bits']}/s{q['state_bits']}" + ("/pc" if q.get("per_channel") else "")


def _parser():
    p = ArgumentParser(prog=PROG, description="Quantization-aware fine-tuning of a "
                       "float checkpoint.")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="run directory (gets checkpoint.pt)")
    p.add_argument("--weight-bits", type=int, default=8)
    p.add_argument("--state-bits", type=int, default=16)
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--beta-frac-bits", type=int)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 2 <= args.weight_bits <= 16:
        raise CliError(f"--weight-bits: {args.weight_bits} is outside 2..16")
    if not 2 <= args.state_bits <= 32:
        raise CliError(f"--state-bits: {args.state_bits} is outside 2..32")
    if args.epochs < 1:
        raise CliError(f"--epochs: expected a positive integer, got {args.epochs}")
    doc = load_checkpoint(args.checkpoint)
    qconfig = dict(weight_bits=args.weight_bits, state_bits=args.state_bits,
                   per_channel=args.per_channel, beta_frac_bits=args.beta_frac_bits)
    net, history, ptq_acc = finetune(doc, qconfig=qconfig, epochs=args.epochs, lr=args.lr,
                                     batch_size=args.batch_size, seed=args.seed,
                                     max_steps=args.max_steps, root=args.root,
                                     limit=args.limit, progress=not args.no_progress)
    out = Path(args.out)
    command = command_line(argv, "quant.qat")
    qat = {**qconfig, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
           "max_steps": args.max_steps, "ptq_accuracy": ptq_acc,
           "float_checkpoint": doc.get("path"), "float_command": doc.get("command")}
    save_checkpoint(out / "checkpoint.pt", net, dataset=doc["dataset"], train=doc["train"],
                    history=(doc.get("history") or []) + [dict(h, qat=True) for h in history],
                    quant=qconfig, command=command, qat=qat)
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    last = history[-1] if history else {}
    print(f"saved {out / 'checkpoint.pt'}: fixed ({_qs(qconfig)}) "
          f"{100 * ptq_acc:.2f}% after PTQ -> "
          f"{100 * last.get('test_acc_fixed', float('nan')):.2f}% after QAT")
    return 0


#: Exceptions that mean bad input (one line, exit status 2).
ERRORS = (CheckpointError, NetImportError, DataError)


def cli(argv=None):
    """``main`` with bad input reported as one line and exit status 2."""
    return main_guard(main, argv, prog=PROG, errors=ERRORS)


if __name__ == "__main__":
    sys.exit(cli())
