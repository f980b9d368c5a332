"""End to end: float network -> fixed-point reference -> generated RTL (UART and stream).

Run with ``python -m bench.e2e --model models/digits [--limit N] [--sim verilator|icarus]
[--workers N] [--ray-address ADDR]``. Prints a table and writes ``bench/results/e2e.json``
(``--out`` elsewhere).

What is run, per sample of the test split of the model's data set
-----------------------------------------------------------------
1. ``float``: the float network of the checkpoint stored in the model directory
   (``checkpoint.pt``, written by ``quant.export --include-checkpoint``), in torch
   (skipped, and said so, when the model directory has no checkpoint).
2. ``reference``: the exported fixed-point model in :func:`sim.reference.run`.
3. ``rtl-uart``: the board top (:class:`boards.top.BoardTop`: UART, framing, input checks,
   the generated network, answers) as Verilog, in one Verilator (or Icarus) simulation
   for all samples under cocotb (:mod:`bench.e2e_tb`, test ``uart``). The bytes on the
   ``rx`` pin are the host codec's: :func:`boards.protocol.words_to_frames` of
   :func:`boards.protocol.sample_words` of the binned sample, one sample after the answer
   of the previous one (as ``boards.host`` sends). The ``tx`` pin is decoded and parsed
   with :class:`boards.protocol.Parser`; the ``RESULT`` frame gives scores, prediction,
   flags and the link's cycle count (first word of the sample to result: mostly UART
   time). The UART divisor is 4 clock cycles per bit in simulation (``--divisor``; the
   boards use 100 MHz / 2 Mbaud = 50 or more), which only shortens the idle time between
   words: the network sees the same words in the same order.
4. ``rtl-stream``: the generated network top (:func:`hw.generate.generate`, the same
   ``Network`` and parameters as inside the board top) in a second simulation, the input
   words offered back to back on its input stream (test ``stream``), one sample after the
   previous one finished. Recorded: scores, prediction, and the network's ``cycle``
   counter at the first offer and at ``done``; the latency of a sample is their
   difference, and it is compared exactly with the cycle model
   (:func:`sim.cycles.predict` with the same start cycle).

Both RTL runs are compared with the reference on every sample: all class scores and the
prediction. The latency at 100 MHz is the stream latency (the network's own time for a
sample arriving at full rate); the UART-bound time at the boards' real baud rate is
reported beside it.

On several workers (Ray)
------------------------
With ``--workers N`` (N > 1) or ``--ray-address ADDR`` the RTL part runs on Ray
(``pip install -e .[scale]``; :mod:`bench.distributed`): the samples are cut into shards
of ``--shard-size`` consecutive samples, and N actors (:class:`RtlSimulator`, one worker
process each, on an embedded loopback Ray instance with N CPUs or on the cluster at
ADDR) build the two designs once and simulate shard after shard, each shard from the
board's or network's reset, with a progress bar. A shard whose worker is lost is
simulated again by the restarted worker. The results are merged in sample order
(:func:`merge_shards`); every sample's answer and cycle counts are those of the
one-process run, because the designs start each sample from the same idle state. The
``STATUS`` answer is the one a single run would end with (:func:`merge_status`).
``e2e.json`` is the one-process file with ``workers`` (count, Ray address, shards,
worker processes) and the seconds summed over the workers.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import machine
from sim.cli import ArgumentParser, CliError, atomic_path, run_main
from sim.model import load_model
from sim.reference import run as reference_run

ROOT = Path(__file__).resolve().parents[1]
CLOCK_HZ = 100e6
SHARD_SAMPLES = 16     # samples per Ray task (one simulator start each): --shard-size

__all__ = ["load_data", "float_predictions", "reference_outcomes", "rtl_sources", "rtl_shard",
           "RtlSimulator", "merge_status", "merge_shards", "run_rtl", "run_rtl_ray", "compare",
           "main"]


def load_data(model_dir, model, limit=None):
    """The binned test split and, when the model directory holds a checkpoint, the
    checkpoint document. Returns ``(BinnedSet, doc or None)``."""
    ckpt = Path(model_dir) / "checkpoint.pt"
    if ckpt.exists():
        from quant.train import data_from_checkpoint, load_checkpoint
        doc = load_checkpoint(ckpt)
        return data_from_checkpoint(doc, "test", limit=limit), doc
    ds = (model.meta or {}).get("dataset") if hasattr(model, "meta") else None
    if not ds:
        raise CliError(f"{model_dir}: no checkpoint.pt and no meta.dataset in model.json: "
                       "cannot tell which data set to run")
    from quant.data import load_dataset
    inp = model.input
    es = load_dataset(ds["name"], "test", seed=ds.get("seed", 0), timesteps=inp.timesteps,
                      dt_us=inp.dt_us, limit=limit, **(ds.get("kwargs") or {}))
    return es.bin(inp.timesteps, inp.dt_us, inp.count_clip), None


def float_predictions(doc, data):
    """Arg-max predictions of the checkpoint's float network (torch)."""
    from quant.train import evaluate, net_from_checkpoint
    net = net_from_checkpoint(doc)
    net.eval()
    return evaluate(net, data)


def reference_outcomes(model, data):
    """Per sample: scores (list), prediction, synaptic operations, overflow."""
    out = []
    for i in range(len(data)):
        r = reference_run(model, data.binned(i), record=False)
        out.append({"scores": [int(s) for s in r.scores], "prediction": int(r.prediction),
                    "synops": int(sum(int(v) for v in r.synops.values())),
                    "overflow": bool(any(np.any(v) for v in r.overflow.values()))})
    return out


def _score_format(model):
    last = model.layers[-1]
    if model.readout == "membrane":
        return last.state_bits, True
    return max(1, model.input.timesteps.bit_length()) + 1, False


def _build(sim, bdir, verilog, toplevel, quick_build=False):
    """Build ``verilog`` for ``sim`` in ``bdir``; returns ``(runner, seconds)``.

    ``quick_build``: Verilator's C++ compiled without optimisation (``-O0``; builds in
    about half the time, simulates slower: for a few samples)."""
    from cocotb_tools.runner import get_runner
    from tests.cocotb.runner import _verilator_env
    build_args = ["-g2005"]
    if sim == "verilator":
        _verilator_env()
        build_args = ["-Wno-fatal"]
    runner = get_runner(sim)
    t0 = time.perf_counter()
    flags = os.environ.get("MAKEFLAGS")
    if sim == "verilator" and quick_build:
        os.environ["MAKEFLAGS"] = (flags or "") + " OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    try:
        runner.build(sources=[str(verilog)], hdl_toplevel=toplevel, build_dir=str(bdir),
                     timescale=("1ns", "1ps"), build_args=build_args, always=True,
                     log_file=str(bdir / "build.log"))
    finally:
        if sim == "verilator" and quick_build:
            if flags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = flags
    return runner, time.perf_counter() - t0


def _simulate(runner, bdir, toplevel, testcase, case):
    """Run ``bench.e2e_tb``'s ``testcase`` with ``case`` on a built ``runner``; returns
    the bench's observations with ``sim_seconds``."""
    outp = bdir / "out.json"
    outp.unlink(missing_ok=True)       # a previous run's results must not be read again
    (bdir / "case.json").write_text(json.dumps(dict(case, out=str(outp))))
    env = {"TB_CASE": str(bdir / "case.json"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    try:
        runner.test(test_module="bench.e2e_tb", hdl_toplevel=toplevel, build_dir=str(bdir),
                    test_dir=str(bdir), extra_env=env, testcase=testcase,
                    timescale=("1ns", "1ps"), results_xml=str(bdir / "results.xml"),
                    log_file=str(bdir / "sim.log"))
    except SystemExit:
        pass
    t1 = time.perf_counter()
    if not outp.exists():
        log = (bdir / "sim.log").read_text()[-3000:] if (bdir / "sim.log").exists() else ""
        raise RuntimeError(f"the {testcase} simulation wrote no results; log tail:\n{log}")
    res = json.loads(outp.read_text())
    res["sim_seconds"] = round(t1 - t0, 1)
    return res


def rtl_sources(model, *, divisor=4, fifo_depth=16, uart=True, stream=True, banks=None):
    """The Verilog of the two simulated designs: ``{"uart": board top or None,
    "stream": network top or None}`` (:class:`boards.top.BoardTop` with ``divisor``,
    named ``board_top``; :func:`hw.generate.generate`, named ``network_top``)."""
    from amaranth.back import verilog as averilog

    from boards.top import BoardTop
    from hw.generate import generate
    out = {"uart": None, "stream": None}
    if uart:
        out["uart"] = averilog.convert(BoardTop(model, divisor, fifo_depth=fifo_depth,
                                                banks=banks),
                                       name="board_top", emit_src=False)
    if stream:
        out["stream"] = generate(model, name="network_top", fifo_depth=fifo_depth,
                                 banks=banks)
    return out


def rtl_shard(model, data, first, stop, uart_stop):
    """The inputs of samples ``first`` to ``stop - 1`` for :meth:`RtlSimulator.run`:
    the host's UART bytes (hex) of those below ``uart_stop``
    (:func:`boards.protocol.words_to_frames` of :func:`boards.protocol.sample_words`,
    with the sample's index as its id) and the packed input-stream words of all."""
    from boards import protocol as pr
    from sim.cycles import input_words
    from sim.tb.layout import input_layout
    lay = input_layout(16)
    return {"first": first,
            "uart": [pr.words_to_frames(pr.sample_words(data.binned(i), i)).hex()
                     for i in range(first, min(stop, uart_stop))],
            "stream": [[lay.pack(kind=k, p=p, y=y, x=x) for k, p, y, x in
                        input_words(model, data.binned(i))] for i in range(first, stop)]}


class RtlSimulator:
    """The two simulated designs of one model, each built once (on first use) and run on
    any number of shards of samples (:func:`rtl_shard`).

    Parameters
    ----------
    sources : dict
        :func:`rtl_sources`.
    score_format : (int, bool)
        Bits per class score on the network top's ``scores`` port and whether they are
        signed.
    n_classes : int
    sim, stream_sim : str
        Simulator of the board top and of the network top.
    build : path or None
        Where the builds go (``uart_<sim>``, ``stream_<stream_sim>``); None: a temporary
        folder, removed by :meth:`close`.
    per_process : bool
        Build in ``build/<host>-<pid>`` (several worker processes sharing ``build``).

    :meth:`run` returns the bench's observations (:mod:`bench.e2e_tb`) of the shard's
    samples, each part with ``build_seconds`` (the build it needed, 0 when built before)
    and ``sim_seconds``, and ``worker`` (host name and process id).
    """

    def __init__(self, sources, *, score_format, n_classes, sim="verilator", stream_sim=None,
                 divisor=4, quick_build=False, build=None, per_process=False):
        self.sources = sources
        self.sim, self.stream_sim = sim, stream_sim or sim
        self.divisor, self.quick_build = divisor, quick_build
        self.score_bits, self.score_signed = score_format
        self.n_classes = n_classes
        self.worker = [socket.gethostname(), os.getpid()]
        self._tmp = None
        if build is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="e2e-")
            build = self._tmp.name
        self.build = Path(build)
        if per_process:
            self.build = self.build / f"{self.worker[0]}-{self.worker[1]}"
        self.runners = {}

    def _part(self, part, testcase, case):
        sim, toplevel, fname = {"uart": (self.sim, "board_top", "board_top.v"),
                                "stream": (self.stream_sim, "network_top", "network_top.v")}[part]
        bdir = self.build / f"{part}_{sim}"
        seconds = 0.0
        if part not in self.runners:
            bdir.mkdir(parents=True, exist_ok=True)
            (bdir / fname).write_text(self.sources[part])
            self.runners[part], seconds = _build(sim, bdir, bdir / fname, toplevel,
                                                 self.quick_build)
        res = _simulate(self.runners[part], bdir, toplevel, testcase, case)
        res["build_seconds"] = round(seconds, 1)
        return res

    def run(self, shard):
        """Simulate one shard; returns ``{"first", "uart", "stream", "worker"}``."""
        out = {"first": shard["first"], "uart": None, "stream": None, "worker": self.worker}
        if shard["uart"]:
            out["uart"] = self._part("uart", "uart",
                                     {"divisor": self.divisor, "bytes": shard["uart"]})
        if shard["stream"]:
            out["stream"] = self._part("stream", "stream",
                                       {"words": shard["stream"], "n_classes": self.n_classes,
                                        "score_bits": self.score_bits,
                                        "score_signed": self.score_signed})
        return out

    def close(self):
        """Remove the temporary build folder (if any)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def merge_status(answers):
    """The ``STATUS_ANSWER`` words one board would have sent after all the shards' samples,
    from the answers sent after each shard (in sample order): sticky flags OR-ed, counters
    summed, ``last_cycles`` of the last shard. None when a shard had no answer."""
    from boards import protocol as pr
    if not answers or any(a is None for a in answers):
        return None
    st = [pr.decode_answer(pr.Frame(pr.STATUS_ANSWER, tuple(a))) for a in answers]
    flags = 0
    for s in st:
        flags |= s.flags
    return pr.StatusAnswer(flags, sum(s.bad_frames for s in st),
                           sum(s.dropped_events for s in st), sum(s.uart_errors for s in st),
                           sum(s.samples for s in st), st[-1].last_cycles).words()


def merge_shards(parts):
    """One result of :func:`run_rtl`'s form from the :meth:`RtlSimulator.run` results of
    consecutive shards (any order): samples concatenated, the ``VERSION`` answer when all
    shards got the same one (else None), the ``STATUS`` answer by :func:`merge_status`,
    build and simulation seconds summed over the shards."""
    parts = sorted(parts, key=lambda p: p["first"])
    out = {"uart": None, "stream": None}
    for part in ("uart", "stream"):
        got = [p[part] for p in parts if p[part] is not None]
        if not got:
            continue
        merged = {"samples": [s for g in got for s in g["samples"]],
                  "build_seconds": round(sum(g["build_seconds"] for g in got), 1),
                  "sim_seconds": round(sum(g["sim_seconds"] for g in got), 1)}
        if part == "uart":
            versions = [g["version"] for g in got]
            merged["version"] = versions[0] if all(v == versions[0] for v in versions) else None
            merged["status"] = merge_status([g["status"] for g in got])
            merged["timeouts"] = sum(g["timeouts"] for g in got)
        out[part] = merged
    return out


def run_rtl(model, data, *, sim="verilator", divisor=4, fifo_depth=16, build=None,
            uart_limit=None, stream=True, uart=True, quick_build=False, stream_sim=None,
            banks=None):
    """Run the samples of ``data`` through the RTL in this process, each design in one
    simulation: the board top over its UART (the first ``uart_limit`` samples, default
    all) and the network top on its input stream.

    ``stream_sim`` runs the stream part on another simulator (default ``sim``).

    Returns ``{"uart": {...} or None, "stream": {...} or None}`` with the bench outputs.
    """
    n = len(data)
    nu = (n if uart_limit is None else min(n, uart_limit)) if uart else 0
    shard = rtl_shard(model, data, 0, n, nu)
    if not stream:
        shard["stream"] = []
    rtl = RtlSimulator(rtl_sources(model, divisor=divisor, fifo_depth=fifo_depth,
                                   uart=nu > 0, stream=stream, banks=banks),
                       score_format=_score_format(model), n_classes=model.n_classes, sim=sim,
                       stream_sim=stream_sim, divisor=divisor, quick_build=quick_build,
                       build=build)
    try:
        return merge_shards([rtl.run(shard)])
    finally:
        rtl.close()


def run_rtl_ray(model, data, *, workers, address=None, shard_size=16, sim="verilator",
                divisor=4, fifo_depth=16, build=None, uart_limit=None, quick_build=False,
                stream_sim=None, banks=None):
    """:func:`run_rtl` with the samples split into shards of ``shard_size`` consecutive
    samples, simulated by ``workers`` Ray actors (:class:`RtlSimulator`, each building the
    designs once), on an embedded local Ray instance or the cluster at ``address``
    (:func:`bench.distributed.connect`); a shard whose worker is lost is simulated again.

    Returns ``(rtl, info)``: ``rtl`` as :func:`run_rtl` (:func:`merge_shards`), ``info``
    the record of the run (``count``, ``ray_address``, ``shard_size``, ``shards``,
    ``worker_processes``: the worker processes that returned shards; one that Ray
    started again in place of a lost one counts anew).
    """
    from bench.distributed import connect, map_actors
    n = len(data)
    nu = n if uart_limit is None else min(n, uart_limit)
    shards = [rtl_shard(model, data, i, min(n, i + shard_size), nu)
              for i in range(0, n, shard_size)]
    sources = rtl_sources(model, divisor=divisor, fifo_depth=fifo_depth, uart=nu > 0,
                          banks=banks)
    kwargs = {"score_format": _score_format(model), "n_classes": model.n_classes,
              "sim": sim, "stream_sim": stream_sim, "divisor": divisor,
              "quick_build": quick_build,
              "build": None if build is None else str(Path(build).resolve()),
              "per_process": True}
    # Ray sends the actor class by reference (module and name): take it from the module
    # bench.e2e, also when this file runs as ``python -m bench.e2e`` (module __main__)
    from bench.e2e import RtlSimulator as worker_class
    with connect(workers, address) as where:
        parts = map_actors(worker_class, (sources,), shards, "run", kwargs=kwargs,
                           workers=workers,
                           size=lambda s: len(s["stream"]), desc="rtl", unit="sample",
                           finish="close")
    info = {"count": workers, "ray_address": where, "shard_size": shard_size,
            "shards": len(shards),
            "worker_processes": len({tuple(p["worker"]) for p in parts})}
    return merge_shards(parts), info


def compare(model, data, ref, rtl, *, fifo_depth=16, divisor=4, banks=None):
    """Per-sample comparison of the RTL runs with the reference and the cycle model."""
    from boards import protocol as pr
    from sim.cycles import HwParams, predict
    params = HwParams(fifo_depth=fifo_depth, banks=banks)
    rows = []
    uart = (rtl.get("uart") or {}).get("samples") or []
    stream = (rtl.get("stream") or {}).get("samples") or []
    for i in range(len(data)):
        row = {"index": i, "label": int(data.labels[i]), "ref_prediction": ref[i]["prediction"],
               "ref_scores": ref[i]["scores"], "synops": ref[i]["synops"]}
        if i < len(uart):
            s = uart[i]
            if s is None:
                row["uart"] = {"missing": True}
            else:
                a = pr.decode_answer(pr.Frame(pr.RESULT, tuple(s["words"])))
                row["uart"] = {"prediction": a.prediction, "scores": list(a.scores),
                               "flags": a.flags, "sample_id": a.sample_id,
                               "link_cycles": a.cycles, "bytes": s["bytes"],
                               "match": (a.prediction == ref[i]["prediction"]
                                         and list(a.scores) == ref[i]["scores"]
                                         and a.sample_id == i & 0xFFFF)}
        if i < len(stream):
            s = stream[i]
            rep = predict(model, data.binned(i), params, start=s["start"])
            lat = s["done"] - s["start"]
            row["stream"] = {"prediction": s["prediction"], "scores": s["scores"],
                             "latency_cycles": lat,
                             "model_latency_cycles": rep.latency_cycles(0),
                             "match": (s["prediction"] == ref[i]["prediction"]
                                       and s["scores"] == ref[i]["scores"]),
                             "cycles_agree": rep.sample_done[0] == s["done"]}
        rows.append(row)
    return rows


def summarize(rows, float_pred, labels, model, divisor, uart_baud_real=2_000_000):
    n = len(rows)
    labels = np.asarray(labels)
    refp = np.array([r["ref_prediction"] for r in rows])
    summ = {"samples": n,
            "float_accuracy": (float((np.asarray(float_pred) == labels).mean())
                               if float_pred is not None else None),
            "reference_accuracy": float((refp == labels).mean()) if n else None}
    if float_pred is not None:
        summ["float_reference_agreement"] = float((np.asarray(float_pred) == refp).mean())
    u = [r["uart"] for r in rows if "uart" in r]
    if u:
        ok = [x for x in u if not x.get("missing")]
        up = np.array([x["prediction"] for x in ok])
        ul = np.array([r["label"] for r in rows if "uart" in r and not r["uart"].get("missing")])
        summ["uart"] = {
            "samples": len(u), "missing": len(u) - len(ok),
            "mismatches": sum(1 for x in u if x.get("missing") or not x["match"]),
            "accuracy": float((up == ul).mean()) if len(ok) else None,
            "flags_set": sum(1 for x in ok if x["flags"]),
            "divisor": divisor,
            "link_cycles_mean": float(np.mean([x["link_cycles"] for x in ok])) if ok else None,
            "bytes_mean": float(np.mean([x["bytes"] for x in ok])) if ok else None,
        }
        if ok:
            # at a real baud rate: every byte takes 10 bits (the link cycles scale with
            # the divisor; the network's own time is a small part of them)
            summ["uart"]["real_baud"] = uart_baud_real
            summ["uart"]["bytes_time_s_at_real_baud"] = (summ["uart"]["bytes_mean"] * 10
                                                         / uart_baud_real)
    s = [r["stream"] for r in rows if "stream" in r]
    if s:
        lat = np.array([x["latency_cycles"] for x in s])
        sl = np.array([r["label"] for r in rows if "stream" in r])
        sp = np.array([x["prediction"] for x in s])
        summ["stream"] = {
            "samples": len(s),
            "mismatches": sum(1 for x in s if not x["match"]),
            "accuracy": float((sp == sl).mean()),
            "cycle_model_disagreements": sum(1 for x in s if not x["cycles_agree"]),
            "latency_cycles_mean": float(lat.mean()), "latency_cycles_min": int(lat.min()),
            "latency_cycles_max": int(lat.max()),
            "latency_us_mean_at_100MHz": float(lat.mean() / CLOCK_HZ * 1e6),
            "samples_per_s_at_100MHz": float(CLOCK_HZ / lat.mean()),
        }
    syn = np.array([r["synops"] for r in rows])
    summ["synops_per_sample"] = float(syn.mean()) if n else None
    return summ


def check_answers(model, uart, n):
    """The VERSION and STATUS answers of the UART run against what they must say."""
    from boards import protocol as pr
    want = pr.VersionAnswer.for_model(model).words()
    got = uart.get("version")
    st = uart.get("status")
    status = pr.decode_answer(pr.Frame(pr.STATUS_ANSWER, tuple(st))) if st else None
    return {"version_ok": got == list(want),
            "status_ok": (status is not None and status.flags == 0 and status.bad_frames == 0
                          and status.dropped_events == 0 and status.uart_errors == 0
                          and status.samples == n)}


def _fmt_pct(x):
    return "-" if x is None else f"{100 * x:.2f} %"


def table(summ):
    lines = [f"{'stage':<34} {'samples':>8} {'accuracy':>10} {'mismatches vs reference':>24}",
             "-" * 80]
    lines.append(f"{'float (torch, checkpoint)':<34} {summ['samples']:>8} "
                 f"{_fmt_pct(summ['float_accuracy']):>10} {'-':>24}")
    lines.append(f"{'fixed point (sim.reference)':<34} {summ['samples']:>8} "
                 f"{_fmt_pct(summ['reference_accuracy']):>10} {'-':>24}")
    if "uart" in summ:
        u = summ["uart"]
        lines.append(f"{'RTL board top via UART':<34} {u['samples']:>8} "
                     f"{_fmt_pct(u['accuracy']):>10} {u['mismatches']:>24}")
    if "stream" in summ:
        s = summ["stream"]
        lines.append(f"{'RTL network top, input stream':<34} {s['samples']:>8} "
                     f"{_fmt_pct(s['accuracy']):>10} {s['mismatches']:>24}")
        lines.append("")
        lines.append(f"latency per sample (network, full-rate input): mean "
                     f"{s['latency_cycles_mean']:.0f} cycles (min {s['latency_cycles_min']}, max "
                     f"{s['latency_cycles_max']}) = {s['latency_us_mean_at_100MHz']:.1f} us at "
                     f"100 MHz, {s['samples_per_s_at_100MHz']:.0f} samples/s")
        lines.append(f"cycle model (sim.cycles) vs RTL done cycle: "
                     f"{s['samples'] - s['cycle_model_disagreements']}/{s['samples']} exact")
    if "uart" in summ and summ["uart"].get("bytes_mean"):
        u = summ["uart"]
        lines.append(f"UART: {u['bytes_mean']:.0f} bytes per sample on average; link cycles "
                     f"(first word to result) {u['link_cycles_mean']:.0f} at divisor "
                     f"{u['divisor']}; at {u['real_baud'] / 1e6:g} Mbaud the bytes alone take "
                     f"{u['bytes_time_s_at_real_baud'] * 1e3:.2f} ms; {u['flags_set']} answers "
                     f"with error flags; VERSION answer "
                     f"{'ok' if u.get('version_ok') else 'WRONG'}, STATUS after the run "
                     f"{'ok' if u.get('status_ok') else 'WRONG'}")
    return "\n".join(lines)





def _command(argv):
    """The command line as recorded (without ``--build DIR`` and ``--out FILE``: local
    paths)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--build", "--out"):
            skip = True
            continue
        if a.startswith(("--build=", "--out=")):
            continue
        out.append(a)
    return " ".join(["python -m bench.e2e", *out])


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench.e2e",
                        description="float -> reference -> RTL (UART and stream), end to end")
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--limit", type=int, default=None, help="first N test samples only")
    ap.add_argument("--uart-limit", type=int, default=None,
                    help="send only the first N samples over the UART (default: all)")
    ap.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    ap.add_argument("--stream-sim", choices=("verilator", "icarus"), default=None,
                    help="simulator of the stream part (default: --sim)")
    ap.add_argument("--divisor", type=int, default=4, help="UART cycles per bit (default 4)")
    ap.add_argument("--fifo-depth", type=int, default=16)
    ap.add_argument("--banks", default=None, metavar="N|LAYER=N,...",
                    help="neuron cores per conv/pool layer (hw.build --banks; default 1)")
    ap.add_argument("--quick-build", action="store_true",
                    help="Verilator: compile the C++ without optimisation (for a few samples)")
    ap.add_argument("--no-rtl", action="store_true", help="float and reference only")
    ap.add_argument("--build", default=None,
                    help="keep the simulation builds here (with Ray: in HOST-PID folders, on "
                         "each worker's machine)")
    ap.add_argument("--workers", type=int, default=1,
                    help="simulate on N Ray workers: an embedded local Ray instance (loopback "
                         "only) unless --ray-address (default 1: in this process, no Ray)")
    ap.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="run the workers on the Ray cluster at ADDR (host:port or auto)")
    ap.add_argument("--shard-size", type=int, default=SHARD_SAMPLES,
                    help=f"samples per Ray task (default {SHARD_SAMPLES})")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "e2e.json"))
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: {args.limit} must be at least 1")
    if args.uart_limit is not None and args.uart_limit < 0:
        raise CliError(f"--uart-limit: {args.uart_limit} must be >= 0")
    if args.shard_size < 1:
        raise CliError(f"--shard-size: {args.shard_size} must be at least 1")
    from bench.distributed import check_workers, uses_ray
    check_workers(args.workers, args.ray_address)
    from boards.uart import MIN_DIVISOR
    if args.divisor < MIN_DIVISOR:
        raise CliError(f"--divisor: {args.divisor} must be at least {MIN_DIVISOR}")
    if not Path(args.model, "model.json").is_file():
        raise CliError(f"{args.model}: not a model directory (no model.json)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    from hw.build import check_banks, parse_banks
    banks_arg = parse_banks(args.banks)
    t0 = time.perf_counter()
    model = load_model(args.model)
    banks = check_banks(model, banks_arg)
    data, doc = load_data(args.model, model, args.limit)
    fpred = float_predictions(doc, data) if doc is not None else None
    t1 = time.perf_counter()
    ref = reference_outcomes(model, data)
    t2 = time.perf_counter()
    rtl = {}
    workers = {"count": 1, "ray_address": None}
    if not args.no_rtl and uses_ray(args.workers, args.ray_address):
        rtl, workers = run_rtl_ray(model, data, workers=args.workers, address=args.ray_address,
                                   shard_size=args.shard_size, sim=args.sim,
                                   divisor=args.divisor, fifo_depth=args.fifo_depth,
                                   build=args.build, uart_limit=args.uart_limit,
                                   quick_build=args.quick_build, stream_sim=args.stream_sim,
                                   banks=banks)
    elif not args.no_rtl:
        rtl = run_rtl(model, data, sim=args.sim, divisor=args.divisor,
                      fifo_depth=args.fifo_depth, build=args.build, uart_limit=args.uart_limit,
                      uart=args.uart_limit != 0, quick_build=args.quick_build,
                      stream_sim=args.stream_sim, banks=banks)
    t3 = time.perf_counter()
    rows = compare(model, data, ref, rtl, fifo_depth=args.fifo_depth, divisor=args.divisor,
                   banks=banks)
    summ = summarize(rows, fpred, data.labels, model, args.divisor)
    if rtl.get("uart"):
        summ["uart"].update(check_answers(model, rtl["uart"], len(data) if args.uart_limit is None
                                          else min(len(data), args.uart_limit)))
    text = table(summ)
    print(text)
    doc_out = {
        "benchmark": "e2e",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
        "command": _command(sys.argv[1:] if argv is None else argv),
        "model": str(args.model), "simulator": None if args.no_rtl else args.sim,
        "stream_simulator": None if args.no_rtl else (args.stream_sim or args.sim),
        "divisor": args.divisor, "fifo_depth": args.fifo_depth, "banks": banks,
        "clock_hz": CLOCK_HZ,
        "workers": workers,
        "float_source": ("checkpoint.pt in the model directory" if doc is not None
                         else "none (no checkpoint in the model directory)"),
        "summary": summ,
        "version_answer": (rtl.get("uart") or {}).get("version"),
        "status_answer": (rtl.get("uart") or {}).get("status"),
        "seconds": {"float_and_data": round(t1 - t0, 1), "reference": round(t2 - t1, 1),
                    "rtl": round(t3 - t2, 1),
                    "uart_build": (rtl.get("uart") or {}).get("build_seconds"),
                    "uart_sim": (rtl.get("uart") or {}).get("sim_seconds"),
                    "stream_build": (rtl.get("stream") or {}).get("build_seconds"),
                    "stream_sim": (rtl.get("stream") or {}).get("sim_seconds")},
        "samples": rows,
    }
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(doc_out, indent=1))
        os.chmod(tmp, 0o644)
    print(f"wrote {out}")
    bad = summ.get("uart", {}).get("mismatches", 0) + summ.get("stream", {}).get("mismatches", 0)
    bad += summ.get("stream", {}).get("cycle_model_disagreements", 0)
    if "uart" in summ:
        bad += (not summ["uart"]["version_ok"]) + (not summ["uart"]["status_ok"])
    return 1 if bad else 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench.e2e")
