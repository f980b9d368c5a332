"""Shared assembly of imported layers into contract layers (used by every importer).

A framework describes a spiking net as a chain of *synaptic* operators (convolution,
affine map, pooling, flatten) and *neuron* nodes. The contract
(docs/semantics.md) has one kind of layer: one synaptic operator (``conv2d``,
``linear`` or ``sumpool2d``) immediately followed by a population of neurons. The
:class:`NetBuilder` collects the operators that an importer's layer handlers feed it
and closes one contract layer at every neuron node.

Pooling
-------
Average pooling ``avg = sum / k**2`` is linear, so it never needs neurons of its own:

* pooling right before a neuron node (``Leaky -> AvgPool2d(k) -> Leaky``, or the
  network input) becomes a ``sumpool2d`` layer whose membrane is ``k**2`` times the
  framework's; its threshold (and any leak bias) is multiplied by ``k**2`` — the
  ``1/k**2`` is folded into the *threshold*;
* pooling after a convolution and before the neuron (``Conv2d -> AvgPool2d -> Leaky``)
  is fused into one convolution with kernel ``K + (k-1) S``, stride ``k S`` and the
  same padding (the weights of overlapping positions add up); its bias is ``k**2``
  times the conv bias and the threshold ``k**2`` times the framework's;
* pooling of spikes right before a convolution or linear layer
  (``Leaky -> AvgPool2d(k) -> [Flatten] -> Linear``) is folded into the next
  *weights*: every weight is repeated over the ``k x k`` block it reads (the kernel
  becomes ``k K`` with stride ``k S`` and padding ``k P``; rows and columns that the
  pooling drops get zero weights) and that layer's threshold and bias are multiplied
  by ``k**2``.

In all three cases the integer model sums where the framework averages, so every
membrane of the affected layer is exactly ``k**2`` times the framework's and the
spikes are the same; no rounding is involved.

A ``divisor_override`` (torch) replaces ``k**2`` by the given divisor. A max pooling
of *spikes* (binary) is the logical OR of the window, i.e. a ``sumpool2d`` with
threshold 1, no memory (beta 0) and reset to zero; :meth:`NetBuilder.add_maxpool`
emits exactly that layer.

Thresholds and strict compares
------------------------------
Frameworks fire on ``v > threshold`` (snnTorch, NIR); the contract fires on
``u >= threshold``. The builder records every threshold in the units of the integer
accumulator (``thr_op``) and whether the compare is strict, and
:meth:`NetBuilder.float_net` turns it into the contract's ``>=`` in one of two modes:

``integer`` (the membranes are integers: integer weights and biases)
    a strict compare ``v > thr`` becomes ``v >= floor(thr) + 1`` for resets ``zero``
    and ``none``, which is exact for integer membranes. For reset ``subtract`` the
    contract uses one number both to compare and to subtract, so the threshold stays
    ``thr`` (which must be an integer) and the compare becomes ``v >= thr``: the
    integer model fires where the framework's membrane *equals* the threshold and the
    framework does not. The importer reports this; it is the only difference.
``float`` (anything else)
    the threshold of a conv/linear layer is ``thr`` as given; ``>`` and ``>=`` differ
    only when a float membrane equals the threshold exactly, and the quantizer's
    rounding dominates. A ``sumpool2d`` layer adds whole spikes (the quantizer keeps
    its scale 1), so its threshold is mapped as in integer mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.model import conv_out_size

from ..ir import FloatLayer, FloatNet, NetImportError

__all__ = ["NetBuilder", "per_channel", "is_integral"]


def is_integral(arr, tol=1e-9):
    """True when every value of ``arr`` is within ``tol`` (relative) of an integer."""
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        return True
    if not np.all(np.isfinite(a)):
        return False
    return bool(np.all(np.abs(a - np.rint(a)) <= tol * np.maximum(1.0, np.abs(a))))


def per_channel(value, out_shape, what, where):
    """Reduce a neuron parameter to one value per output channel.

    Accepts a scalar, an array of one value, one value per channel (``(C,)`` or
    ``(C, 1, 1)``) or one value per neuron (``out_shape``). Values must agree within
    each channel (the contract has per-channel, not per-neuron, parameters).

    Returns
    -------
    ndarray of float64, shape ``(C,)``
    """
    a = np.asarray(value, dtype=np.float64)
    c = int(out_shape[0])
    if a.size == 1:
        return np.full(c, float(a.reshape(-1)[0]))
    shape = tuple(int(s) for s in out_shape)
    if a.shape == shape or (a.size == int(np.prod(shape)) and a.ndim == 1 and len(shape) == 1):
        per = a.reshape(c, -1)
    elif a.size == c:
        per = a.reshape(c, 1)
    elif a.ndim >= 1 and a.shape[-len(shape):] == shape and a.size == int(np.prod(shape)):
        per = a.reshape(c, -1)
    else:
        raise NetImportError(f"{where}: {what} has shape {tuple(a.shape)}, expected one value, "
                             f"one per channel ({c}) or one per neuron {shape}")
    if not np.all(per == per[:, :1]):
        ch = int(np.argmax(np.any(per != per[:, :1], axis=1)))
        raise NetImportError(f"{where}: {what} differs between neurons of channel {ch}; the "
                             f"contract has one value per output channel")
    return per[:, 0].copy()


@dataclass
class _Op:
    """A synaptic operator waiting for its neurons (accumulator units)."""
    type: str                  # conv2d | linear | sumpool2d
    name: str
    in_shape: tuple
    out_shape: tuple
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    scale: float = 1.0         # framework membrane = scale * accumulator
    pooled: list = field(default_factory=list)


@dataclass
class _Pool:
    """A pooling of spikes that the next operator or neuron will absorb."""
    name: str
    kernel: int
    divisor: float             # 1 for sum pooling, k*k (or an override) for average


@dataclass
class _Record:
    op: _Op
    name: str
    beta: float
    thr_op: np.ndarray          # per channel, accumulator units
    thr_per_channel: bool
    reset: str
    strict: bool
    subtract_is_next_integer: bool = False


class NetBuilder:
    """Collect operators and neurons in order and build a :class:`FloatNet`.

    Parameters
    ----------
    input_shape : tuple
        ``(P, H, W)``.
    where : str
        Prefix of error messages (usually the file name).
    noun : str
        What the source calls its layers in messages ("layer", "node").
    """

    def __init__(self, input_shape, where="net", noun="layer"):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise NetImportError(f"{where}: input shape {list(shape)} is not (P, H, W)")
        self.input_shape = shape
        self.where = where
        self.noun = noun
        self.shape = shape          # the framework's current shape (3-D or flat)
        self.flat = False           # a Flatten was seen since the last 3-D operator
        self.op = None
        self.pool = None
        self.records = []
        self.notes = []
        self._names = set()

    # -- helpers --------------------------------------------------------------------------
    def _at(self, name):
        return f"{self.where}: {self.noun} {name}"

    def _need_no_op(self, name, kind):
        if self.op is not None:
            raise NetImportError(
                f"{self._at(name)}: {kind} follows {self.op.type} {self.op.name!r} without a "
                f"neuron in between; the contract needs neurons after every conv/linear layer")

    @property
    def spatial(self):
        return len(self.shape) == 3 and not self.flat

    @property
    def pending_pool_shape(self):
        """Output shape ``(C, H, W)`` of a pooling not yet followed by neurons, or ``None``."""
        return self._pooled_shape if self.pool is not None else None

    def rename_last(self, name):
        """Rename the last neuron layer (a name from the source's metadata).

        Returns ``False`` (and renames nothing) when another layer has that name.
        """
        rec = self.records[-1]
        if name != rec.name and name in self._names:
            return False
        self._names.discard(rec.name)
        self._names.add(name)
        rec.name = name
        return True

    # -- operators ------------------------------------------------------------------------
    def add_conv(self, name, weight, bias, stride, padding):
        """A 2-D convolution; ``weight`` is ``(C_out, C_in, K, K)``."""
        self._need_no_op(name, "Conv2d")
        if not self.spatial:
            raise NetImportError(f"{self._at(name)}: Conv2d needs a (C, H, W) input, got a flat "
                                 f"input of {int(np.prod(self.shape))} values")
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise NetImportError(f"{self._at(name)}: weight shape {tuple(w.shape)} is not a "
                                 f"square (C_out, C_in, K, K) kernel")
        k = int(w.shape[2])
        if w.shape[1] != self.shape[0]:
            raise NetImportError(f"{self._at(name)}: expects {w.shape[1]} input channels, the "
                                 f"input has {self.shape[0]}")
        if stride < 1 or padding < 0 or padding >= k:
            raise NetImportError(f"{self._at(name)}: stride {stride}, padding {padding}: need "
                                 f"stride >= 1 and 0 <= padding < kernel {k}")
        b = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        in_shape = self.shape
        scale = 1.0
        pooled = []
        if self.pool is not None:           # pooled spikes -> widen the kernel
            p = self.pool
            c, h, wd = in_shape
            kk = p.kernel
            w = np.repeat(np.repeat(w, kk, axis=2), kk, axis=3)
            in_shape = self._pool_src_shape
            if in_shape[1] % kk or in_shape[2] % kk:
                raise NetImportError(
                    f"{self._at(name)}: cannot fold pooling {p.name!r} (kernel {kk}) into this "
                    f"Conv2d: its input {list(self._pool_src_shape)} is not a multiple of {kk}")
            k, stride, padding = k * kk, stride * kk, padding * kk
            scale = 1.0 / p.divisor
            pooled.append(p.name)
            self.notes.append(f"pooling {p.name} folded into the weights of {name} "
                              f"(kernel x{kk}, threshold and bias x{p.divisor:g})")
            self.pool = None
        c, h, wd = in_shape
        out = (int(w.shape[0]), conv_out_size(h, k, stride, padding),
               conv_out_size(wd, k, stride, padding))
        if min(out) < 1:
            raise NetImportError(f"{self._at(name)}: output shape {list(out)} is empty")
        if b is not None and scale != 1.0:
            b = b / scale
        self.op = _Op("conv2d", name, in_shape, out, w, b, k, stride, padding, scale, pooled)
        self.shape = out

    def add_linear(self, name, weight, bias):
        """An affine map ``(N_out, N_in)`` on the flattened input."""
        self._need_no_op(name, "Linear")
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 2:
            raise NetImportError(f"{self._at(name)}: weight shape {tuple(w.shape)} is not "
                                 f"(N_out, N_in)")
        n_in = int(np.prod(self.shape))
        if w.shape[1] != n_in:
            raise NetImportError(f"{self._at(name)}: expects {w.shape[1]} inputs, the previous "
                                 f"layer gives {n_in} (shape {list(self.shape)})")
        b = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        scale = 1.0
        pooled = []
        if self.pool is not None:           # pooled spikes -> repeat each weight k x k
            p = self.pool
            kk = p.kernel
            c, hp, wp = self._pooled_shape
            src = self._pool_src_shape
            w4 = w.reshape(w.shape[0], c, hp, wp)
            big = np.zeros((w.shape[0], c, src[1], src[2]))
            big[:, :, :hp * kk, :wp * kk] = np.repeat(np.repeat(w4, kk, axis=2), kk, axis=3)
            w = big.reshape(w.shape[0], -1)
            n_in = w.shape[1]
            scale = 1.0 / p.divisor
            pooled.append(p.name)
            self.notes.append(f"pooling {p.name} folded into the weights of {name} "
                              f"(threshold and bias x{p.divisor:g})")
            self.pool = None
        if b is not None and scale != 1.0:
            b = b / scale
        self.op = _Op("linear", name, (n_in,), (int(w.shape[0]),), w, b, scale=scale,
                      pooled=pooled)
        self.shape = (int(w.shape[0]),)
        self.flat = False

    def add_pool(self, name, kernel, stride=None, padding=0, average=True, divisor=None):
        """Sum or average pooling, stride == kernel, no padding."""
        k = int(kernel)
        stride = k if stride is None else int(stride)
        if k < 1 or stride != k or padding != 0:
            raise NetImportError(f"{self._at(name)}: pooling kernel {k}, stride {stride}, "
                                 f"padding {padding}: the contract pools with stride == kernel "
                                 f"and no padding")
        if not self.spatial:
            raise NetImportError(f"{self._at(name)}: pooling needs a (C, H, W) input")
        if self.pool is not None:
            raise NetImportError(f"{self._at(name)}: two poolings in a row ({self.pool.name!r} "
                                 f"and this one) are not supported; use one pooling")
        div = float(divisor) if divisor is not None else (float(k * k) if average else 1.0)
        c, h, w = self.shape
        if h // k < 1 or w // k < 1:
            raise NetImportError(f"{self._at(name)}: kernel {k} is larger than the input "
                                 f"{list(self.shape)}")
        out = (c, h // k, w // k)
        if self.op is not None:
            op = self.op
            if op.type != "conv2d" or op.pooled:
                raise NetImportError(f"{self._at(name)}: pooling after {op.type} {op.name!r} "
                                     f"without neurons in between is not supported")
            # fuse conv(K, S, P) followed by pool(k) into conv(K + (k-1) S, k S, P)
            K, S = op.kernel, op.stride
            kc = K + (k - 1) * S
            wc = np.zeros(op.weight.shape[:2] + (kc, kc))
            for dy in range(k):
                for dx in range(k):
                    wc[:, :, dy * S:dy * S + K, dx * S:dx * S + K] += op.weight
            op.weight = wc
            op.kernel, op.stride = kc, k * S
            if op.bias is not None:
                op.bias = op.bias * (k * k)
            op.scale = op.scale / div
            op.out_shape = out
            op.pooled.append(name)
            self.notes.append(f"pooling {name} fused into the preceding convolution {op.name} "
                              f"(kernel {kc}, stride {k * S}, threshold x{div:g})")
            self.shape = out
            return
        self.pool = _Pool(name, k, div)
        self._pool_src_shape = self.shape
        self._pooled_shape = out
        self.shape = out

    def add_flatten(self, name):
        """A flatten: the contract flattens implicitly before a linear layer."""
        if len(self.shape) == 3:
            self.flat = True

    def add_maxpool(self, name, kernel, stride=None, padding=0, first_layer_clip=1):
        """Max pooling of *spikes*: an OR over the window (sumpool2d, threshold 1, beta 0)."""
        k = int(kernel)
        stride = k if stride is None else int(stride)
        if self.op is not None:
            raise NetImportError(f"{self._at(name)}: max pooling of the currents of "
                                 f"{self.op.type} {self.op.name!r} is not linear; only max "
                                 f"pooling of spikes (after a neuron) is supported")
        if not self.records and first_layer_clip != 1:
            raise NetImportError(f"{self._at(name)}: max pooling of input counts needs "
                                 f"count_clip 1 (binary inputs), got {first_layer_clip}")
        self.add_pool(name, k, stride, padding, average=False)
        self.add_neuron(name, beta=0.0, threshold=1.0, reset="zero", strict=False)
        self.notes.append(f"max pooling {name} of binary spikes became an OR: sumpool2d with "
                          f"threshold 1, beta 0, reset zero")

    # -- neurons --------------------------------------------------------------------------
    def add_neuron(self, name, *, beta, threshold, reset, strict=True, gain=1.0,
                   leak_bias=None, threshold_per_channel=None, subtract_is_next_integer=False):
        """Close the current operator with a population of neurons.

        Parameters
        ----------
        beta : float
            Leak factor per step.
        threshold : scalar or array
            In the framework's membrane units (any per-channel form of
            :func:`per_channel`).
        reset : {"subtract", "zero", "none"}
        strict : bool
            The framework fires on ``>`` (``True``) or ``>=``.
        gain : float
            The framework's membrane gets ``gain x`` the operator's output (NIR's ``r``).
        leak_bias : array or None
            Constant per-channel input per step, membrane units (NIR's ``v_leak`` term).
        subtract_is_next_integer : bool
            With reset subtract and a strict compare, the source subtracts the integer
            threshold ``floor(thr) + 1`` (as :mod:`quant.nir_export` writes it) rather than
            ``thr`` (snnTorch): integer mode then maps exactly, with no tie caveat.
        """
        if self.op is None:
            if self.pool is None:
                raise NetImportError(f"{self._at(name)}: a neuron layer without a preceding "
                                     f"Conv2d/Linear/pooling; the contract needs a synaptic "
                                     f"operator before every neuron layer")
            p = self.pool
            c, h, w = self._pool_src_shape
            self.op = _Op("sumpool2d", p.name, self._pool_src_shape, self._pooled_shape,
                          kernel=p.kernel, stride=p.kernel, padding=0, scale=1.0 / p.divisor,
                          pooled=[p.name])
            if p.divisor != 1:
                self.notes.append(f"average pooling {p.name} became sumpool2d; its threshold "
                                  f"is x{p.divisor:g}")
            self.pool = None
        op = self.op
        where = self._at(name)
        if reset not in ("subtract", "zero", "none"):
            raise NetImportError(f"{where}: reset {reset!r} is not subtract, zero or none")
        if not math.isfinite(beta) or not 0 <= beta <= 1:
            raise NetImportError(f"{where}: beta {beta!r} is outside 0..1")
        if not math.isfinite(gain) or gain <= 0:
            raise NetImportError(f"{where}: input gain {gain!r} must be positive")
        thr = per_channel(threshold, op.out_shape, "threshold", where)
        if threshold_per_channel is None:
            threshold_per_channel = bool(np.asarray(threshold).size > 1)
        if not np.all(np.isfinite(thr)) or (thr <= 0).any():
            raise NetImportError(f"{where}: threshold must be positive, got "
                                 f"{float(thr.min()):g}")
        if op.weight is not None:       # gain goes into the weights
            op.weight = op.weight * gain
            if op.bias is not None:
                op.bias = op.bias * gain
            thr_op = thr / op.scale
            unit = op.scale
        else:                           # pooling has no weights: scale the threshold
            thr_op = thr / (op.scale * gain)
            unit = op.scale * gain
        if leak_bias is not None:
            lb = per_channel(leak_bias, op.out_shape, "leak bias (v_leak)", where)
            if np.any(lb != 0):
                if op.weight is None:
                    raise NetImportError(f"{where}: a leak bias (v_leak) after pooling "
                                         f"{op.name!r} cannot be expressed (sumpool2d has no "
                                         f"bias)")
                extra = lb / unit
                op.bias = extra if op.bias is None else op.bias + extra
        lname = op.name if op.name not in self._names else name
        if lname in self._names:
            raise NetImportError(f"{where}: duplicate layer name {lname!r}")
        self._names.add(lname)
        self.records.append(_Record(op, lname, float(beta), thr_op, bool(threshold_per_channel),
                                    reset, bool(strict), bool(subtract_is_next_integer)))
        self.op = None
        self.flat = len(self.shape) == 3 and self.flat

    # -- result ---------------------------------------------------------------------------
    def finish_check(self):
        if self.op is not None:
            raise NetImportError(f"{self._at(self.op.name)}: the network ends with "
                                 f"{self.op.type} {self.op.name!r} without neurons; the "
                                 f"contract's output layer is a neuron layer")
        if self.pool is not None:
            raise NetImportError(f"{self._at(self.pool.name)}: the network ends with a pooling")
        if not self.records:
            raise NetImportError(f"{self.where}: no layers were imported")

    def graph_layers(self, extras=None):
        """The layers as :class:`quant.importers.graph.GLayer` (accumulator units), for
        sources with version-2 features; ``extras[name]`` may add ``synapses`` (in the
        framework's membrane units, divided here by the layer's scale) and
        ``current_beta``."""
        from .graph import GLayer, GSynapse
        self.finish_check()
        extras = extras or {}
        out = []
        prev = "input"
        for r in self.records:
            op = r.op
            syn = GSynapse(source=prev, type=op.type, weight=op.weight, kernel=op.kernel,
                           stride=op.stride, padding=op.padding,
                           origin=f"{self.noun} {op.name}")
            x = extras.get(r.name, {})
            bias = op.bias
            synapses = [syn]
            for extra in x.get("synapses", ()):
                if extra.weight is not None:
                    extra.weight = extra.weight / op.scale
                synapses.append(extra)
            if x.get("bias") is not None:
                b = np.asarray(x["bias"], dtype=np.float64) / op.scale
                bias = b if bias is None else bias + b
            out.append(GLayer(name=r.name, out_shape=tuple(op.out_shape), synapses=synapses,
                              beta=r.beta, threshold=r.thr_op, reset=r.reset, strict=r.strict,
                              bias=bias, threshold_per_channel=r.thr_per_channel,
                              subtract_is_next_integer=r.subtract_is_next_integer,
                              current_beta=x.get("current_beta"),
                              origin=f"{self.noun} {r.name}"))
            prev = r.name
        return out

    def integral(self):
        """Whether every weight and bias is an integer (the ``integer`` mode applies)."""
        for r in self.records:
            if r.op.weight is not None and not is_integral(r.op.weight):
                return False
            if r.op.bias is not None and not is_integral(r.op.bias):
                return False
            if r.reset == "subtract" and r.strict and not r.subtract_is_next_integer \
                    and not is_integral(r.thr_op):
                return False
        return True

    def float_net(self, *, timesteps, dt_us=1000, count_clip=1, readout="spike_count",
                  integer=None, meta=None):
        """The imported :class:`FloatNet` and the mode used (see the module docstring).

        Parameters
        ----------
        integer : bool or None
            ``None`` picks ``integer`` when :meth:`integral` holds.

        Returns
        -------
        net : FloatNet
        integer : bool
        """
        self.finish_check()
        if integer is None:
            integer = self.integral()
        elif integer and not self.integral():
            for r in self.records:
                for what, a in (("weights", r.op.weight), ("bias", r.op.bias)):
                    if a is not None and not is_integral(a):
                        bad = a.flat[int(np.argmax(np.abs(a - np.rint(a)).reshape(-1)))]
                        raise NetImportError(f"{self._at(r.name)}: {what} value {bad:g} is not "
                                             f"an integer (integer mode)")
                if r.reset == "subtract" and r.strict and not r.subtract_is_next_integer \
                        and not is_integral(r.thr_op):
                    raise NetImportError(
                        f"{self._at(r.name)}: threshold {float(r.thr_op.max()):g} (accumulator "
                        f"units) is not an integer; reset 'subtract' subtracts it (integer mode)")
        layers = []
        ties = []
        for r in self.records:
            op = r.op
            thr = r.thr_op
            # a pooling adds whole spikes: its accumulator is an integer in both modes
            if integer or op.weight is None:
                near = np.where(np.abs(thr - np.rint(thr)) <= 1e-9 * np.maximum(1, np.abs(thr)),
                                np.rint(thr), thr)
                if not r.strict:
                    thr = np.ceil(near)             # v >= thr  <=>  v >= ceil(thr)
                elif r.reset == "subtract" and not r.subtract_is_next_integer:
                    thr = near                      # integral (checked): '>' becomes '>='
                    ties.append(r.name)
                else:
                    thr = np.floor(near) + 1        # v > thr  <=>  v >= floor(thr) + 1
            if integer:
                w = None if op.weight is None else np.rint(op.weight)
                b = None if op.bias is None else np.rint(op.bias)
            else:
                w, b = op.weight, op.bias
            pc = r.thr_per_channel or len(set(thr.tolist())) > 1
            layers.append(FloatLayer(
                name=r.name, type=op.type, in_shape=tuple(op.in_shape),
                out_shape=tuple(op.out_shape), kernel=op.kernel, stride=op.stride,
                padding=op.padding, weight=w, bias=b, beta=r.beta,
                threshold=thr.copy() if pc else float(thr[0]), reset=r.reset))
        notes = list(self.notes)
        if integer:
            notes.append("integer mode: strict compares 'v > thr' became 'v >= floor(thr)+1' "
                         "for resets zero/none")
        else:
            notes.append("float mode: thresholds of conv/linear layers kept as given ('>' "
                         "read as '>='; the quantizer chooses scales); sumpool2d layers add "
                         "whole spikes, so their '>' became '>= floor(thr)+1' (zero/none)")
        if ties:
            notes.append("reset subtract in " + ", ".join(ties) + ": the contract compares "
                         "'v >= thr' where the source compares 'v > thr'; spikes differ "
                         "only when a membrane equals the threshold exactly")
        m = dict(meta or {})
        imp = dict(m.get("import", {}))
        imp["mode"] = "integer" if integer else "float"
        imp["notes"] = notes
        m["import"] = imp
        net = FloatNet(input_shape=self.input_shape, layers=layers, timesteps=int(timesteps),
                       dt_us=int(dt_us), count_clip=int(count_clip), readout=readout, meta=m)
        return net, bool(integer)
