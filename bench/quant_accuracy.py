"""Accuracy of the shipped models: float, post-training quantization, QAT.

Run with ``python -m bench.quant_accuracy`` (a few minutes on one core; ``--quick`` for
a smoke run on a subset). Prints a table and writes
``bench/results/quant_accuracy.json``; ``--only temporal_synth`` measures that part alone
and updates it in the existing JSON.

What is measured
----------------
- ``digits`` (scikit-learn digits as rate-coded events; fixed split: index % 5 == 0 is
  the 360-image test set): the float checkpoint shipped in ``models/digits``
  (``checkpoint.pt``, made by the command in ``models/digits/README.md``; ``--retrain``
  trains a new one with that command) is quantized with
  :func:`quant.ptq.quantize` at several widths (8 / 6 / 4 / 3-bit weights, 16-bit
  states, per layer and per output channel), and each integer model is run through the
  bit-exact reference (:func:`sim.reference.run`) on the whole test set. Then the
  float checkpoint is fine-tuned with quantization-aware training at 4-bit weights
  (per layer and per channel) and 3-bit weights (per channel)
  (:func:`quant.qat.finetune`, 6 epochs, lr 1e-3) and measured the same way: the gap
  between PTQ and QAT at the same widths is what QAT recovers.
- ``gesture_synth`` (procedural 2 x 128 x 128 event camera, 8 motion classes, the
  27.7k-neuron topology): the shipped checkpoint, 8-bit weights / 16-bit states,
  reference accuracy on the 320-sample test split.
- ``temporal_synth`` (procedural 2 x 16 x 16 flashes whose order is the class): the
  graph shipped in ``models/temporal_synth`` (residual block, delayed taps, recurrent
  current-based layer) and the chain baseline trained with the same settings but no
  skip, delay or recurrence and about as many weights
  (``models/temporal_synth/chain_baseline.pt``), both exported with 8-bit weights /
  16-bit states and run through the reference on the 480-sample test split; the graph
  also at 4-bit weights, post-training and after 3 epochs of quantization-aware
  fine-tuning.

Targets checked (``targets`` in the JSON): digits float >= 95 %; digits 8/16 within
1 point of float; gesture_synth fixed point >= 90 %; temporal_synth graph fixed point
>= 95 % and at least 10 points above the chain.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _eval(model, data, float_net=None):
    from quant.report import evaluate
    r = evaluate(model, data, float_net=float_net)
    return {k: r.get(k) for k in ("fixed_accuracy", "float_accuracy", "agreement",
                                  "torch_integer_agreement", "overflow_count",
                                  "synops_per_sample", "samples")}


#: Fine-tuning epochs of the temporal_synth graph at 4-bit weights.
QAT_EPOCHS_TEMPORAL = 3


def _temporal(limit):
    """The temporal_synth graph and its chain baseline, 8-bit weights / 16-bit states."""
    from quant import train as qtrain
    tdir = ROOT / "models" / "temporal_synth"
    out = {}
    for key, ckpt in (("graph", tdir / "checkpoint.pt"), ("chain", tdir / "chain_baseline.pt")):
        if not ckpt.is_file():
            continue
        doc = qtrain.load_checkpoint(ckpt)
        net = qtrain.net_from_checkpoint(doc)
        net.eval()
        test = qtrain.data_from_checkpoint(doc, "test", limit=limit)
        model = qtrain.quantize_net(doc["floatnet"], weight_bits=8, state_bits=16)
        r = _eval(model, test, float_net=net)
        out[key] = {"checkpoint_command": doc["command"], "arch": doc["train"]["arch"],
                    "neurons": model.n_neurons, "weights": model.n_weights,
                    "weight_bits": 8, "state_bits": 16, **r}
        print(f"temporal_synth {key} w8/s16: fixed {100 * r['fixed_accuracy']:.2f}% (float "
              f"{100 * r['float_accuracy']:.2f}%; {model.n_neurons} neurons, "
              f"{model.n_weights} weights)", flush=True)
        if key != "graph":
            continue
        # PTQ and QAT of the graph at 4-bit weights
        from quant.qat import finetune
        qconfig = dict(weight_bits=4, state_bits=16, per_channel=False, beta_frac_bits=None)
        epochs = 1 if limit else QAT_EPOCHS_TEMPORAL
        qnet, _, ptq_acc = finetune(doc, qconfig=qconfig, epochs=epochs, lr=1e-3, seed=0,
                                    limit=limit, progress=False,
                                    log=lambda m: print("  " + m, flush=True))
        r4 = _eval(qtrain.quantize_net(qnet.to_floatnet(), **qconfig), test)
        out["graph_w4"] = {"ptq_accuracy": ptq_acc, "qat_accuracy": r4["fixed_accuracy"],
                           "qat_epochs": epochs, "lr": 1e-3, "weight_bits": 4,
                           "state_bits": 16}
        print(f"temporal_synth graph w4/s16: PTQ {100 * ptq_acc:.2f}% -> QAT "
              f"{100 * r4['fixed_accuracy']:.2f}%", flush=True)
    return out


def _temporal_targets(t):
    tg = t.get("graph", {}).get("fixed_accuracy")
    tc = t.get("chain", {}).get("fixed_accuracy")
    out = {}
    if tg is not None:
        out["temporal_graph_fixed_ge_95"] = tg >= 0.95
    if tg is not None and tc is not None:
        out["temporal_graph_minus_chain_points"] = round(100 * (tg - tc), 2)
        out["temporal_graph_beats_chain_by_10"] = tg - tc >= 0.10
    return out


def _write(results, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.quant_accuracy")
    p.add_argument("--quick", action="store_true", help="subset of the test sets, short QAT")
    p.add_argument("--retrain", action="store_true",
                   help="train digits again with the recorded command instead of using "
                        "the shipped checkpoint")
    p.add_argument("--only", choices=["temporal_synth"],
                   help="measure only this part and update it in the existing --out JSON")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "quant_accuracy.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.only:
        t0 = time.time()
        results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        results["temporal_synth"] = _temporal(60 if args.quick else None)
        results.setdefault("targets", {}).update(_temporal_targets(results["temporal_synth"]))
        results["temporal_synth_seconds"] = round(time.time() - t0, 1)
        _write(results, args.out)
        print(f"targets: {json.dumps(_temporal_targets(results['temporal_synth']))}")
        print(f"updated {args.out}")
        return 0
    from quant.ptq import quantize
    from quant.qat import finetune
    from quant.train import data_from_checkpoint, load_checkpoint, net_from_checkpoint
    from quant import train as qtrain

    limit = 60 if args.quick else None
    results = {"quick": args.quick, "digits": {}, "gesture_synth": {}}
    t0 = time.time()

    # -- digits ------------------------------------------------------------------------
    ck = ROOT / "models" / "digits" / "checkpoint.pt"
    if args.retrain:
        tmp = Path(tempfile.mkdtemp(prefix="quant_bench_"))
        doc = load_checkpoint(ck)
        cmd = doc["command"].split()[3:]          # drop "python -m quant.train"
        i = cmd.index("--out")
        cmd[i + 1] = str(tmp / "digits")
        qtrain.main(cmd + ["--no-progress"])
        ck = tmp / "digits" / "checkpoint.pt"
    doc = load_checkpoint(ck)
    results["digits"]["checkpoint_command"] = doc["command"]
    net = net_from_checkpoint(doc)
    net.eval()
    test = data_from_checkpoint(doc, "test", limit=limit)
    rows = []
    settings = [(8, 16, False), (8, 16, True), (6, 16, False), (4, 16, False), (4, 16, True),
                (3, 16, True)]
    for wb, sb, pc in settings:
        model = quantize(doc["floatnet"], weight_bits=wb, state_bits=sb, per_channel=pc)
        r = _eval(model, test, float_net=net)
        rows.append({"method": "PTQ", "weight_bits": wb, "state_bits": sb, "per_channel": pc,
                     **r})
        print(f"digits PTQ w{wb}/s{sb}{'/pc' if pc else ''}: fixed "
              f"{100 * r['fixed_accuracy']:.2f}% (float {100 * r['float_accuracy']:.2f}%)",
              flush=True)
    float_acc = rows[0]["float_accuracy"]
    qat_epochs = 1 if args.quick else 6
    for wb, pc in ((4, False), (4, True), (3, True)):
        qconfig = dict(weight_bits=wb, state_bits=16, per_channel=pc, beta_frac_bits=None)
        qnet, hist, ptq_acc = finetune(doc, qconfig=qconfig, epochs=qat_epochs, lr=1e-3,
                                       seed=0, limit=limit, progress=False,
                                       log=lambda m: print("  " + m, flush=True))
        model = quantize(qnet.to_floatnet(), **qconfig)
        r = _eval(model, test)
        rows.append({"method": "QAT", "weight_bits": wb, "state_bits": 16, "per_channel": pc,
                     "epochs": qat_epochs, "lr": 1e-3, "ptq_accuracy_before": ptq_acc, **r})
        print(f"digits QAT w{wb}/s16{'/pc' if pc else ''}: PTQ {100 * ptq_acc:.2f}% -> "
              f"QAT {100 * r['fixed_accuracy']:.2f}%", flush=True)
    results["digits"]["float_accuracy"] = float_acc
    results["digits"]["rows"] = rows

    # -- gesture_synth -----------------------------------------------------------------
    gck = ROOT / "models" / "gesture_synth" / "checkpoint.pt"
    if gck.is_file():
        gdoc = load_checkpoint(gck)
        gnet = net_from_checkpoint(gdoc)
        gnet.eval()
        gtest = data_from_checkpoint(gdoc, "test", limit=limit)
        model = quantize(gdoc["floatnet"], weight_bits=8, state_bits=16)
        r = _eval(model, gtest, float_net=gnet)
        results["gesture_synth"] = {"checkpoint_command": gdoc["command"],
                                    "weight_bits": 8, "state_bits": 16, **r}
        print(f"gesture_synth w8/s16: fixed {100 * r['fixed_accuracy']:.2f}% (float "
              f"{100 * r['float_accuracy']:.2f}%)", flush=True)

    results["temporal_synth"] = _temporal(limit)

    row8 = rows[0]
    ptq4 = next(r for r in rows if r["method"] == "PTQ" and r["weight_bits"] == 4
                and not r["per_channel"])
    qat4 = next(r for r in rows if r["method"] == "QAT" and r["weight_bits"] == 4
                and not r["per_channel"])
    ptq3 = next(r for r in rows if r["method"] == "PTQ" and r["weight_bits"] == 3)
    qat3 = next(r for r in rows if r["method"] == "QAT" and r["weight_bits"] == 3)
    results["targets"] = {
        "digits_float_ge_95": float_acc >= 0.95,
        "digits_8bit_within_1pt": abs(row8["fixed_accuracy"] - float_acc) <= 0.01,
        "digits_4bit_qat_recovers_points": 100 * (qat4["fixed_accuracy"]
                                                  - ptq4["fixed_accuracy"]),
        "digits_3bit_pc_qat_recovers_points": 100 * (qat3["fixed_accuracy"]
                                                     - ptq3["fixed_accuracy"]),
        "gesture_fixed_ge_90": (results["gesture_synth"].get("fixed_accuracy") or 0) >= 0.90,
    }
    results["targets"].update(_temporal_targets(results["temporal_synth"]))
    results["seconds"] = round(time.time() - t0, 1)
    results["torch"] = str(torch.__version__)
    out = Path(args.out)
    _write(results, out)
    print()
    print("| data set | method | weights/state | per channel | fixed-point acc | float acc |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        print(f"| digits | {r['method']} | {r['weight_bits']}/{r['state_bits']} | "
              f"{'yes' if r['per_channel'] else 'no'} | {100 * r['fixed_accuracy']:.2f}% | "
              f"{100 * float_acc:.2f}% |")
    g = results["gesture_synth"]
    if g:
        print(f"| gesture_synth | PTQ | 8/16 | no | {100 * g['fixed_accuracy']:.2f}% | "
              f"{100 * g['float_accuracy']:.2f}% |")
    for key, t in results["temporal_synth"].items():
        if key not in ("graph", "chain"):
            continue
        print(f"| temporal_synth ({key}) | PTQ | 8/16 | no | {100 * t['fixed_accuracy']:.2f}% "
              f"| {100 * t['float_accuracy']:.2f}% |")
    print(f"\ntargets: {json.dumps(results['targets'])}")
    print(f"wrote {out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
