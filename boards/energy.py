"""Energy per inference from operation and memory-access counts (a hardware-independent model).

The model is the analytical estimate of Lemaire et al., "An Analytical Estimation of
Spiking Neural Networks Energy Efficiency", ICONIP 2022 (LNCS 13623, pp. 574-587,
doi:10.1007/978-3-031-30105-6_48, arXiv:2210.13107). It counts, per layer and per
inference, the synaptic operations, the memory accesses to weights, potentials,
biases and input/output events, and the address computations, and prices each with
45 nm CMOS figures. The same network run as a non-spiking (formal) network, one dense
pass of multiply-accumulates, is priced the same way for comparison.

Constants (:class:`EnergyConstants`, in pJ)
    - ``E_add = 0.1`` and ``E_mul = 3.1``: 32-bit integer add and multiply at 45 nm,
      from M. Horowitz, "Computing's energy problem (and what we can do about it)",
      ISSCC 2014.
    - memory access ``E_mem(n_bits) = 1.09e-5 * n_bits + 13.2`` for one read or write
      in an SRAM of ``n_bits`` bits: a linear fit of Horowitz's 45 nm SRAM figures
      (64-bit access: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ).

    Provenance: the paper itself could not be read while writing this module. The
    constants and the count equations were checked against the implementation of
    the authors' group, the ``EnergyEstimationMetric`` of LEAT-EDGE/qualia-plugin-snn
    (its ``_m_e_add``, ``_m_e_mul`` and ``_e_ram``), and the Horowitz figures are the
    widely quoted ones; treat the memory fit as "as used by the authors", not as
    verified against the paper's text.

Counts for one layer of the spiking network (``T`` steps, ``N`` output neurons,
``theta_in``/``theta_out`` the layer's input/output spikes in the whole inference,
``synops`` the weight additions the reference counted)
    - ops: ``acc = synops + T*N + theta_out`` additions (Eq. 1.4/2.4: synaptic
      additions, the per-step neuron update, the resets) and ``mac = T*N`` multiplies
      when the layer leaks (Eq. 1.3/2.3). The exact ``synops`` of the run replace the
      paper's ``theta_in * ceil(K/S)**2 * C_out`` estimate (which ignores borders).
    - addressing: conv ``2*theta_in`` multiply-adds and ``theta_in*K*K`` additions
      (Eq. 16, as the authors' code counts them); linear ``theta_in*N_out``
      additions (Eq. 17); sum pooling (not in the paper) ``2*theta_in`` multiply-adds
      and ``theta_in`` additions (each input reaches one output).
    - memory: one weight read per synaptic operation (Eq. 7f/8f), in a memory of all
      the layer's weights; potentials ``synops + T*N`` writes (Eq. 14/15) in a memory
      of ``N`` states; biases ``T*N`` reads; events ``theta_in`` reads and ``theta_out``
      writes (Eq. 5/13) in a FIFO of ``fifo_words`` 32-bit words. Two deliberate
      departures from the paper: the per-neuron terms of potentials and biases are
      counted once per step (``T*N``, the paper counts ``N``), because the contract
      adds the bias and updates every neuron at every step.

Work done by the sweeps (issue 15)
    ``T*N`` above is the dense design: every neuron is updated (leak, compare, write-back)
    every step. Given ``swept`` (per layer the neuron updates the sweeps actually did, from
    :func:`sim.liveness.sweep_counts`, the hardware's own count), that number replaces
    ``T*N`` in the additions, the leak multiplies, the bias reads and the potential
    writes; and a sparse layer pays for its live list (``hw.livelist``): per swept word
    one list read and one list write (``list_accesses``) in a memory of ``D`` words of
    ``ceil(log2 D)`` bits, priced with the potentials (``mem_pot``). ``dense_over_swept`` in the counts is ``T*N`` over the neuron
    updates done: the dense-equivalent ratio of the sweep work.

Counts for one layer of the formal network (one pass)
    conv ``mac = N_out*C_in*K*K``, linear ``mac = N_in*N_out``, plus ``N_out`` additions
    (Eq. 1.1-2.2); addressing conv ``N_in + N_out + C_out*K*K``, linear ``N_in*N_out``
    additions; memory: ``mac`` input reads (conv, Eq. 3) or ``N_in`` (linear, Eq. 4),
    ``mac`` weight reads (Eq. 6), ``N_out`` bias reads when there is a bias,
    ``N_out`` output writes (Eq. 11/12); sum pooling: ``N_out*K*K`` additions and as
    many input reads.

Memory widths: by default each memory has its natural width (weights ``weight_bits``,
potentials, biases and formal activations ``state_bits``, events 32 bits);
``mem_width`` sets one width for all, as the paper does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass

import numpy as np

from sim.model import INPUT
from sim.registry import KINDS

__all__ = ["EnergyConstants", "LayerEnergy", "EnergyReport", "snn_energy", "fnn_energy",
           "mean_sweep_counts", "compare", "main"]

EVENT_BITS = 32


@dataclass(frozen=True)
class EnergyConstants:
    """45 nm energy figures in pJ (see the module docstring for the sources)."""
    e_add: float = 0.1
    e_mul: float = 3.1
    mem_pj_per_bit: float = 1.09e-5
    mem_offset: float = 13.2

    def e_mem(self, n_bits):
        """One read or write in an SRAM of ``n_bits`` bits."""
        return self.mem_pj_per_bit * n_bits + self.mem_offset

    @property
    def e_mac(self):
        return self.e_mul + self.e_add


@dataclass
class LayerEnergy:
    """Energy of one layer in one inference (pJ) and the counts behind it."""
    name: str
    ops: float
    addr: float
    mem_weights: float
    mem_bias: float
    mem_pot: float
    mem_io: float
    counts: dict

    @property
    def memory(self):
        return self.mem_weights + self.mem_bias + self.mem_pot + self.mem_io

    @property
    def total(self):
        return self.ops + self.addr + self.memory


@dataclass
class EnergyReport:
    """Per-layer energies of one network kind (``"snn"`` or ``"fnn"``)."""
    kind: str
    layers: list

    @property
    def total(self):
        return sum(layer.total for layer in self.layers)

    def to_dict(self):
        return {"kind": self.kind, "total_pj": self.total,
                "layers": [dict(asdict(layer), total=layer.total) for layer in self.layers]}


def _widths(layer, mem_width):
    if mem_width:
        return mem_width, mem_width, mem_width
    wbits = max((syn.weight_bits or 0 for syn in layer.synapses), default=0)
    return wbits, layer.state_bits, EVENT_BITS


class KindEnergy:
    """The energy rules of one synapse kind (Lemaire et al.), attached to the kind in the
    registry as its ``"boards.energy"`` part; this base is the rule of a kind without
    weights that adds once per event (sum pool, identity)."""

    @staticmethod
    def addressing(syn, theta, N):
        """``(mac_addr, acc_addr)``: the address arithmetic of ``theta`` input events
        through ``syn`` into ``N`` neurons (here: two MACs for the window's origin and
        one add)."""
        return 2 * theta, theta

    @staticmethod
    def dense_pass(syn, layer):
        """``(mac, acc, addr, input_reads, weight_reads)`` of a formal network's dense
        pass through one tap of ``syn`` into ``layer``."""
        N_in, N = int(np.prod(syn.in_shape)), layer.n_out
        acc = N * (syn.kernel or 1) ** 2
        return 0, acc, N_in + N, acc, 0


class ConvEnergy(KindEnergy):
    """A conv: the window's origin (two MACs) and one add per kernel position."""

    @staticmethod
    def addressing(syn, theta, N):
        return 2 * theta, theta * syn.kernel ** 2

    @staticmethod
    def dense_pass(syn, layer):
        N_in, N = int(np.prod(syn.in_shape)), layer.n_out
        K2 = syn.kernel ** 2
        mac = N * int(syn.in_shape[0]) * K2
        return mac, N, N_in + N + layer.c_out * K2, mac, mac


class LinearEnergy(KindEnergy):
    """A linear synapse: one add per neuron to address its weights."""

    @staticmethod
    def addressing(syn, theta, N):
        return 0, theta * N

    @staticmethod
    def dense_pass(syn, layer):
        N_in, N = int(np.prod(syn.in_shape)), layer.n_out
        return N_in * N, N, N_in * N, N_in, N_in * N


for _kind, _rules in (("conv2d", ConvEnergy), ("linear", LinearEnergy),
                      ("sumpool2d", KindEnergy), ("identity", KindEnergy)):
    # (``python -m boards.energy`` runs this file a second time, as ``__main__``)
    if not KINDS[_kind].has_part("boards.energy"):
        KINDS[_kind].attach("boards.energy", _rules)


def _energy(syn):
    """The energy rules of ``syn``'s kind (the registry's ``"boards.energy"`` part)."""
    return KINDS[syn.type].part("boards.energy")


def _results(result):
    return list(result) if isinstance(result, (list, tuple)) else [result]


def snn_energy(model, result, *, constants=None, fifo_words=64, mem_width=None, swept=None):
    """Energy per inference of the spiking network from a run's counts.

    Parameters
    ----------
    model : sim.model.Model
    result : sim.reference.Result or list of them
        Counts of one sample (``input_spikes``, ``synops``, ``spike_count``); with a
        list, the mean energy per inference.
    constants : EnergyConstants, optional
    fifo_words : int
        Depth of the event FIFO in front of each layer.
    mem_width : int, optional
        One width for every memory (the paper's convention).
    swept : list of dict, optional
        Per layer ``{"sparse", "words", "neurons", "dense_words", "dense_neurons"}`` per
        inference (:func:`sim.liveness.sweep_counts`, or their mean over samples): the
        sweep work done; ``None``: the dense design's ``T*N``.

    Returns
    -------
    EnergyReport
    """
    c = constants or EnergyConstants()
    results = _results(result)
    T = model.input.timesteps
    layers = []
    for i, layer in enumerate(model.layers):
        n = len(results)
        # events each synapse's engine reads: its source's spikes, once per tap
        thetas = []
        for syn in layer.synapses:
            src = model.source_of(i, syn)
            spikes = sum(r.input_spikes if src == INPUT else r.spike_count[src]
                         for r in results) / n
            thetas.append(spikes * syn.taps)
        theta_in = sum(thetas)
        theta_out = sum(r.spike_count[layer.name] for r in results) / n
        syn = sum(r.synops[layer.name] for r in results) / n
        N = layer.n_out
        wbits, sbits, ebits = _widths(layer, mem_width)
        upd = T * N if swept is None else swept[i]["neurons"]   # neuron updates of the sweeps
        acc = syn + upd + theta_out
        mac = upd if layer.has_leak else 0
        mac_addr = acc_addr = 0
        for s_, theta in zip(layer.synapses, thetas):
            ma, aa = _energy(s_).addressing(s_, theta, N)
            mac_addr, acc_addr = mac_addr + ma, acc_addr + aa
        # every synaptic operation reads a weight when every synapse has weights; a layer
        # that mixes in a weightless (identity) synapse counts its additions too (an
        # upper bound: the reference counts synaptic operations per layer)
        w_reads = syn if any(s_.weights is not None for s_ in layer.synapses) else 0
        bias_reads = upd if layer.bias is not None else 0
        pot_writes = syn + upd
        e_fifo = c.e_mem(fifo_words * ebits)
        counts = {"theta_in": theta_in, "theta_out": theta_out, "synops": syn, "acc": acc,
                  "mac": mac, "mac_addr": mac_addr, "acc_addr": acc_addr,
                  "weight_reads": w_reads, "bias_reads": bias_reads,
                  "potential_writes": pot_writes, "neuron_updates": upd,
                  "dense_over_swept": T * N / upd if upd else float("inf")}
        e_list = 0.0
        if swept is not None and swept[i]["sparse"]:
            D = int(round(swept[i]["dense_words"] / T))
            counts["list_accesses"] = 2 * swept[i]["words"]
            e_list = counts["list_accesses"] * c.e_mem(D * max(1, (D - 1).bit_length()))
        layers.append(LayerEnergy(
            name=layer.name,
            ops=mac * c.e_mac + acc * c.e_add,
            addr=mac_addr * c.e_mac + acc_addr * c.e_add,
            mem_weights=w_reads * c.e_mem(layer.weight_count() * wbits),
            mem_bias=bias_reads * c.e_mem(layer.c_out * sbits),
            mem_pot=pot_writes * c.e_mem(N * sbits) + e_list,
            mem_io=(theta_in + theta_out) * e_fifo,
            counts=counts))
    return EnergyReport("snn", layers)


def fnn_energy(model, *, constants=None, mem_width=None):
    """Energy per inference of the same network as a formal (non-spiking) network."""
    c = constants or EnergyConstants()
    layers = []
    for layer in model.layers:
        N = layer.n_out
        wbits, sbits, _ = _widths(layer, mem_width)
        mac = acc = addr = in_reads = w_reads = N_in = 0
        for syn in layer.synapses:          # a dense pass through each synapse (and tap)
            m, a, ad, ir, wr = _energy(syn).dense_pass(syn, layer)
            n_in = int(np.prod(syn.in_shape))
            mac, acc, addr = mac + m * syn.taps, acc + a * syn.taps, addr + ad * syn.taps
            in_reads, w_reads = in_reads + ir * syn.taps, w_reads + wr * syn.taps
            N_in += n_in * syn.taps
        bias_reads = N if layer.bias is not None else 0
        counts = {"mac": mac, "acc": acc, "acc_addr": addr, "input_reads": in_reads,
                  "weight_reads": w_reads, "bias_reads": bias_reads, "output_writes": N}
        layers.append(LayerEnergy(
            name=layer.name,
            ops=mac * c.e_mac + acc * c.e_add,
            addr=addr * c.e_add,
            mem_weights=w_reads * c.e_mem(layer.weight_count() * wbits),
            mem_bias=bias_reads * c.e_mem(layer.c_out * sbits),
            mem_pot=0.0,
            mem_io=in_reads * c.e_mem(N_in * sbits) + N * c.e_mem(N * sbits),
            counts=counts))
    return EnergyReport("fnn", layers)


def mean_sweep_counts(model, binned, results, lanes=None, sweep="sparse"):
    """:func:`sim.liveness.sweep_counts` of every sample (``record=True`` runs), averaged
    per layer: the ``swept`` argument of :func:`snn_energy`."""
    from sim.geometry import lanes_of
    from sim.liveness import sweep_counts
    lanes = lanes_of(model, lanes)
    per = [sweep_counts(model, b, r, lanes, sweep) for b, r in zip(binned, results)]
    out = []
    for i in range(len(model.layers)):
        rows = [p[i] for p in per]
        out.append({"sparse": rows[0]["sparse"],
                    **{k: sum(r[k] for r in rows) / len(rows)
                       for k in ("words", "neurons", "dense_words", "dense_neurons")}})
    return out


def compare(model, result, **kwargs):
    """SNN and FNN energies per inference and their ratio (``fnn / snn``); ``swept`` as
    in :func:`snn_energy`."""
    fifo_words = kwargs.pop("fifo_words", 64)
    swept = kwargs.pop("swept", None)
    snn = snn_energy(model, result, fifo_words=fifo_words, swept=swept, **kwargs)
    fnn = fnn_energy(model, **kwargs)
    return {"snn": snn.to_dict(), "fnn": fnn.to_dict(), "snn_pj": snn.total,
            "fnn_pj": fnn.total, "fnn_over_snn": fnn.total / snn.total}


def _table(report):
    lines = [f"{report.kind.upper():6s} {'layer':12s} {'ops':>10s} {'addr':>10s} "
             f"{'weights':>10s} {'bias':>10s} {'potent.':>10s} {'io':>10s} {'total nJ':>10s}"]
    for e in report.layers:
        lines.append(f"{'':6s} {e.name:12.12s} " + " ".join(
            f"{v / 1e3:10.3f}" for v in (e.ops, e.addr, e.mem_weights, e.mem_bias, e.mem_pot,
                                         e.mem_io, e.total)))
    lines.append(f"{'':6s} {'total':12s} {'':>76s}{report.total / 1e3:10.3f}")
    return "\n".join(lines)


def main(argv=None):
    """``python -m boards.energy --model DIR --events PATH [...]``: print the estimate."""
    from sim.events import EventError, bin_events
    from sim.model import ModelError, load_model
    from sim.reference import run

    from .host import HostError, load_samples

    ap = argparse.ArgumentParser(prog="python -m boards.energy",
                                 description="Energy per inference (Lemaire et al. 2022 model).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--events", required=True, help="event file or directory")
    ap.add_argument("--fifo-words", type=int, default=64)
    ap.add_argument("--mem-width", type=int, default=None)
    ap.add_argument("--sweep", choices=["sparse", "dense"], default="sparse",
                    help="the neuron cores' sweep (default lanes): count its work")
    args = ap.parse_args(argv)
    try:
        model = load_model(args.model)
        inp = model.input
        binned = [bin_events(s.events, inp.shape, inp.timesteps, inp.dt_us, inp.count_clip,
                             where=s.name) for s in load_samples(args.events)]
        results = [run(model, b, record=True) for b in binned]
    except (ModelError, EventError, HostError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    swept = mean_sweep_counts(model, binned, results, sweep=args.sweep)
    snn = snn_energy(model, results, fifo_words=args.fifo_words, mem_width=args.mem_width,
                     swept=swept)
    fnn = fnn_energy(model, mem_width=args.mem_width)
    print(f"{len(results)} samples; energy per inference in nJ (45 nm, Lemaire et al. 2022)")
    print(_table(snn))
    print(_table(fnn))
    print(f"formal / spiking: {fnn.total / snn.total:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
