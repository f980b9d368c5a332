"""Spiking layers in torch that follow the fixed-point contract, float or integer-exact.

A :class:`SpikingNet` runs a stack of :class:`SpikingLayer` step by step through time
with the update order of the contract (docs/semantics.md), for a batch at once::

    acc = v + synapse(s_in) + bias
    u   = clamp(acc)                  # integer modes only
    s   = u >= threshold              # surrogate gradient in backward
    v   = leak(u) - s * threshold     # reset "subtract" ("zero", "none" likewise)

The spikes of step ``k`` feed the next layer at step ``k``. Class scores are the
output layer's spike counts over ``T`` steps (``spike_count``) or its clamped ``u`` at
the last step (``membrane``, the output layer never fires).

Three modes
-----------
``"float"``
    Real-valued parameters, no rounding, no clamping: the semantics of
    :class:`quant.ir.FloatNet`. Used for training.
``"fake_quant"``
    Quantization-aware fine-tuning. Every forward pass quantizes the current float
    parameters with the rules of :mod:`quant.ptq` (the one copy of those rules) and
    then computes *in integer units*, exactly as the hardware does: integer weights,
    bias and thresholds, state clamped to ``state_bits``, leak ``(u * num) >> frac``
    as a floor. Rounding, clamping and the floor pass gradients straight through. The
    forward pass is integer-exact: it agrees spike for spike and state for state with
    :func:`sim.reference.run` on the model :func:`quant.ptq.quantize` exports.
``"integer"``
    A fixed integer model (:meth:`SpikingNet.from_model`): the same integer forward
    pass, for running any :class:`sim.model.Model` batched in torch (fast accuracy
    estimates during training, and the spike-for-spike test against the reference).

Exactness: integer-mode arithmetic runs in ``float32`` when every accumulator fits in
24 bits (``acc_bits <= 24`` and ``state_bits + frac_bits <= 24``, so every sum and
product is an exactly representable integer whatever the summation order) and in
``float64`` otherwise (exact up to 53 bits; the format caps widths at 62, and models
past 53 bits are rejected here).

Surrogate gradients
-------------------
The spike is a Heaviside step of ``x = (u - threshold) / threshold``; its backward pass
uses the derivative of a smooth stand-in (:data:`SURROGATES`): ``fast_sigmoid``
(default, ``1 / (1 + slope*|x|)**2``), ``atan``, ``triangle`` or ``straight_through``.
Resets use the detached spike (gradients do not flow through the reset).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.model import Model, conv_out_size

from .ir import FloatLayer, FloatNet
from .ptq import quantize_beta, quantize_layer_params

__all__ = ["SURROGATES", "spike", "SpikingLayer", "SpikingNet", "MODES"]

MODES = ("float", "fake_quant", "integer")


def _fast_sigmoid(x, slope):
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def _atan(x, slope):
    return (slope / 2) / (1 + (math.pi / 2 * slope * x) ** 2)


def _triangle(x, slope):
    return torch.clamp(1.0 - slope * x.abs(), min=0.0) * slope


def _straight_through(x, slope):
    return torch.ones_like(x)


#: Derivatives of the smooth stand-ins for the spike, by name.
SURROGATES = {"fast_sigmoid": _fast_sigmoid, "atan": _atan, "triangle": _triangle,
              "straight_through": _straight_through}


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate, slope):
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.slope = surrogate, slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * SURROGATES[ctx.surrogate](x, ctx.slope), None, None


def spike(x, surrogate="fast_sigmoid", slope=5.0):
    """``x >= 0`` as 0/1 in the forward pass, a surrogate derivative in the backward pass."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}, expected one of "
                         f"{', '.join(SURROGATES)}")
    return _Spike.apply(x, surrogate, slope)


def _ste(x, target):
    """``target`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (target - x).detach()


def _floor_leak(u, num, frac):
    """``(u * num) >> frac`` on integer-valued floats, the gradient of ``u * beta``."""
    if num == (1 << frac):
        return u
    exact = torch.floor(u.detach() * num / (1 << frac))
    return _ste(u * (num / (1 << frac)), exact)


def _clamp_flag(x, bits):
    """``x`` clamped to the signed ``bits`` range (straight-through gradient) and, per
    sample, whether the clamp changed anything."""
    y = torch.clamp(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return _ste(x, y), (y != x).reshape(x.shape[0], -1).any(dim=1).detach()


class _FloatOps:
    """What float mode does to a layer's bias, thresholds and sums (shared by the chain
    and the graph networks): the layer's own values, no clamp, a float leak."""

    def bias_tensor(self, dtype):
        return self.layer.bias

    def threshold_tensor(self, dtype):
        return self.layer.threshold.to(torch.float32)

    def clamp(self, acc):
        return acc, torch.zeros(acc.shape[0], dtype=torch.bool)

    def leak(self, u):
        return u * self.layer.beta.to(u.dtype)


class _IntOps:
    """What integer mode does (shared by the chain and the graph networks): integer bias
    and thresholds, the state clamp and the floor leak (``bias``, ``threshold``, ``num``,
    ``frac``, ``state_bits`` set by the subclass)."""

    def bias_tensor(self, dtype):
        return None if self.bias is None else self.bias.to(dtype)

    def threshold_tensor(self, dtype):
        return self.threshold.to(dtype)

    def clamp(self, acc):
        return _clamp_flag(acc, self.state_bits)

    def leak(self, u):
        return _floor_leak(u, self.num, self.frac)


class SpikingLayer(nn.Module):
    """One layer: a synapse (``conv2d``, ``linear`` or ``sumpool2d``) and LIF neurons.

    Parameters mirror :class:`quant.ir.FloatLayer`. ``weight`` and ``bias`` are
    trainable; ``beta`` and ``threshold`` are fixed buffers (scalars or one per output
    channel).
    """

    def __init__(self, name, type, in_shape, out_shape=None, *, kernel=None, stride=None,
                 padding=None, bias=False, beta=1.0, threshold=1.0, reset="subtract",
                 out_channels=None, n_out=None):
        super().__init__()
        self.name, self.type, self.reset = name, type, reset
        self.in_shape = tuple(int(s) for s in in_shape)
        if type == "conv2d":
            C, H, W = self.in_shape
            stride = stride or 1
            padding = padding or 0
            co = out_channels if out_channels is not None else out_shape[0]
            self.out_shape = (int(co), conv_out_size(H, kernel, stride, padding),
                              conv_out_size(W, kernel, stride, padding))
            self.weight = nn.Parameter(torch.empty(co, C, kernel, kernel))
            fan_in = C * kernel * kernel
        elif type == "linear":
            n_in = int(np.prod(self.in_shape))
            self.in_shape = (n_in,)
            no = n_out if n_out is not None else out_shape[0]
            self.out_shape = (int(no),)
            self.weight = nn.Parameter(torch.empty(no, n_in))
            fan_in = n_in
            kernel = stride = padding = None
        elif type == "sumpool2d":
            C, H, W = self.in_shape
            stride, padding = kernel, 0
            self.out_shape = (C, H // kernel, W // kernel)
            self.weight = None
            fan_in = kernel * kernel
        else:
            raise ValueError(f"layer {name}: unknown layer type {type!r}")
        self.kernel, self.stride, self.padding = kernel, stride, padding
        if reset not in ("subtract", "zero", "none"):
            raise ValueError(f"layer {name}: unknown reset {reset!r}")
        if self.weight is not None:
            nn.init.uniform_(self.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.bias = nn.Parameter(torch.zeros(self.out_shape[0])) if bias and \
            self.weight is not None else None
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float64).clone())
        self.register_buffer("threshold",
                             torch.as_tensor(threshold, dtype=torch.float64).clone())
        self._int = None          # fixed integer parameters ("integer" mode)

    # -- description ----------------------------------------------------------------
    @property
    def c_out(self):
        return self.out_shape[0]

    def to_float_layer(self):
        """This layer as a :class:`quant.ir.FloatLayer` (detached numpy copies)."""
        def arr(t):
            if t is None:
                return None
            a = t.detach().cpu().numpy().astype(np.float64)
            return float(a) if a.ndim == 0 else a
        return FloatLayer(name=self.name, type=self.type, in_shape=self.in_shape,
                          out_shape=self.out_shape, kernel=self.kernel, stride=self.stride,
                          padding=self.padding, weight=arr(self.weight), bias=arr(self.bias),
                          beta=arr(self.beta), threshold=arr(self.threshold),
                          reset=self.reset)

    # -- synapse --------------------------------------------------------------------
    def synapse(self, x, weight):
        """Input spikes ``x`` (batch first) times the weights, shaped ``(B, *out_shape)``."""
        if self.type == "linear":
            return F.linear(x.reshape(x.shape[0], -1), weight)
        if self.type == "conv2d":
            return F.conv2d(x, weight, stride=self.stride, padding=self.padding)
        return F.avg_pool2d(x, self.kernel, stride=self.kernel, divisor_override=1)

    def _channel(self, t, like):
        """A scalar or per-channel tensor broadcast against ``(B, C, ...)``."""
        t = t.to(like.dtype)
        if t.ndim == 0:
            return t
        return t.reshape((1, -1) + (1,) * (like.ndim - 2))


class SpikingNet(nn.Module):
    """A spiking network run step by step through time.

    Parameters
    ----------
    layers : list of SpikingLayer
    input_shape : tuple
        ``(P, H, W)``.
    timesteps, dt_us, count_clip : int
        Input binning (the exported model's ``input`` section).
    readout : {"spike_count", "membrane"}
    surrogate : str
        Key of :data:`SURROGATES`.
    slope : float
        Steepness of the surrogate.
    """

    def __init__(self, layers, input_shape, timesteps, dt_us=1000, count_clip=1,
                 readout="spike_count", surrogate="fast_sigmoid", slope=5.0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.timesteps, self.dt_us, self.count_clip = int(timesteps), int(dt_us), int(count_clip)
        if readout not in ("spike_count", "membrane"):
            raise ValueError(f"unknown readout {readout!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}")
        self.readout, self.surrogate, self.slope = readout, surrogate, float(slope)
        self.mode = "float"
        self.qconfig = dict(weight_bits=8, state_bits=16, per_channel=False,
                            beta_frac_bits=None)

    # -- conversions ----------------------------------------------------------------
    def to_floatnet(self, meta=None):
        """The float network (what :func:`quant.ptq.quantize` consumes)."""
        return FloatNet(input_shape=self.input_shape,
                        layers=[layer.to_float_layer() for layer in self.layers],
                        timesteps=self.timesteps, dt_us=self.dt_us, count_clip=self.count_clip,
                        readout=self.readout, meta=dict(meta or {}))

    @classmethod
    def from_floatnet(cls, net, **kw):
        """A trainable net holding the parameters of a :class:`FloatNet`."""
        layers = []
        for fl in net.layers:
            layer = SpikingLayer(fl.name, fl.type, fl.in_shape, fl.out_shape, kernel=fl.kernel,
                                 stride=fl.stride, padding=fl.padding, bias=fl.bias is not None,
                                 beta=fl.beta, threshold=fl.threshold, reset=fl.reset)
            with torch.no_grad():
                if layer.weight is not None:
                    layer.weight.copy_(torch.as_tensor(np.asarray(fl.weight), dtype=torch.float32))
                if layer.bias is not None:
                    layer.bias.copy_(torch.as_tensor(np.asarray(fl.bias), dtype=torch.float32))
            layers.append(layer)
        return cls(layers, net.input_shape, net.timesteps, net.dt_us, net.count_clip,
                   net.readout, **kw)

    @classmethod
    def from_model(cls, model: Model):
        """An ``"integer"``-mode net that runs a fixed integer :class:`sim.model.Model`."""
        layers = []
        for layer in model.layers:
            sl = SpikingLayer(layer.name, layer.type, layer.in_shape, layer.out_shape,
                              kernel=layer.kernel, stride=layer.stride, padding=layer.padding,
                              reset=layer.reset)
            sl._int = _IntParams.from_layer(layer)
            sl.requires_grad_(False)
            layers.append(sl)
        net = cls(layers, model.input.shape, model.input.timesteps, model.input.dt_us,
                  model.input.count_clip, model.readout)
        net.mode = "integer"
        return net

    def set_mode(self, mode, **qconfig):
        """Switch between ``"float"`` and ``"fake_quant"`` (with quantization settings:
        ``weight_bits``, ``state_bits``, ``per_channel``, ``beta_frac_bits``)."""
        if mode not in ("float", "fake_quant"):
            raise ValueError(f"mode {mode!r}: use 'float' or 'fake_quant' "
                             f"('integer' nets come from SpikingNet.from_model)")
        if self.mode == "integer":
            raise ValueError("an integer-mode net has fixed parameters")
        unknown = set(qconfig) - set(self.qconfig)
        if unknown:
            raise ValueError(f"unknown quantization setting {sorted(unknown)[0]!r}")
        self.qconfig.update(qconfig)
        self.mode = mode
        return self

    # -- parameters per mode --------------------------------------------------------
    def _layer_params(self, i, layer):
        """Per-step parameters of one layer in the current mode."""
        if self.mode == "float":
            return _FloatParams(layer)
        if self.mode == "integer":
            return layer._int
        q = self.qconfig
        membrane_out = self.readout == "membrane" and i == len(self.layers) - 1
        fl = layer.to_float_layer()
        qp = quantize_layer_params(fl, weight_bits=q["weight_bits"], state_bits=q["state_bits"],
                                   per_channel=q["per_channel"],
                                   force_layer_scale=membrane_out)
        num, frac = quantize_beta(fl.beta, q["beta_frac_bits"], name=fl.name)
        return _IntParams.from_fake_quant(layer, qp, num, frac, q["state_bits"])

    def compute_dtype(self, params=None):
        """``float32`` when integer arithmetic stays exact in it, else ``float64``."""
        if self.mode == "float":
            return torch.float32
        params = params or [self._layer_params(i, l) for i, l in enumerate(self.layers)]
        worst = 0
        for i, p in enumerate(params):
            m = self.count_clip if i == 0 else 1
            worst = max(worst, p.acc_bits(m), p.state_bits + p.frac)
        if worst > 53:
            raise ValueError(f"integer widths of {worst} bits cannot run exactly in torch")
        return torch.float32 if worst <= 24 else torch.float64

    # -- forward --------------------------------------------------------------------
    def forward(self, x, record=False):
        """Run a batch through all ``T`` steps.

        Parameters
        ----------
        x : Tensor
            Input counts ``(T, B, P, H, W)`` (already clipped to ``count_clip``).
        record : bool
            Also return per-layer traces.

        Returns
        -------
        scores : Tensor ``(B, n_classes)``
            Spike counts (``spike_count``) or the last step's ``u`` (``membrane``).
        traces : dict, only with ``record``
            ``{"spikes": {name: (T, B, *out_shape)}, "states": {...}, "overflow":
            {name: (T, B) bool}}``; states are the stored ``v`` after each step.
        """
        T = x.shape[0]
        params = [self._layer_params(i, layer) for i, layer in enumerate(self.layers)]
        dtype = self.compute_dtype(params)
        x = x.to(dtype)
        B = x.shape[1]
        n = len(self.layers)
        membrane = self.readout == "membrane"
        v = [None] * n
        weights = [p.weight_tensor(dtype) for p in params]
        biases = [p.bias_tensor(dtype) for p in params]
        scores = None
        traces = {"spikes": {}, "states": {}, "overflow": {}} if record else None
        rec_s = [[] for _ in range(n)]
        rec_v = [[] for _ in range(n)]
        rec_o = [[] for _ in range(n)]
        for k in range(T):
            s = x[k]
            for i, (layer, p) in enumerate(zip(self.layers, params)):
                acc = layer.synapse(s, weights[i])
                if biases[i] is not None:
                    acc = acc + layer._channel(biases[i], acc)
                if v[i] is not None:
                    acc = acc + v[i]
                thr = layer._channel(p.threshold_tensor(dtype), acc)
                u, ovf = p.clamp(acc)
                fire = not (membrane and i == n - 1)
                if fire:
                    s = spike((u - thr) / thr, self.surrogate, self.slope)
                else:
                    s = torch.zeros_like(u)
                leaked = p.leak(u)
                sd = s.detach()
                if layer.reset == "subtract":
                    v[i] = leaked - sd * thr
                elif layer.reset == "zero":
                    v[i] = leaked * (1 - sd)
                else:
                    v[i] = leaked
                if record:
                    rec_s[i].append(s.detach())
                    rec_v[i].append(v[i].detach())
                    rec_o[i].append(ovf)
                if i == n - 1:
                    if membrane:
                        if k == T - 1:
                            scores = u
                    else:
                        scores = s if scores is None else scores + s
        if scores is None:   # T == 0
            scores = torch.zeros(B, *self.layers[-1].out_shape, dtype=dtype)
        scores = scores.reshape(B, -1)
        if record:
            for i, layer in enumerate(self.layers):
                traces["spikes"][layer.name] = torch.stack(rec_s[i])
                traces["states"][layer.name] = torch.stack(rec_v[i])
                traces["overflow"][layer.name] = torch.stack(rec_o[i])
            return scores, traces
        return scores


class _FloatParams(_FloatOps):
    """Float mode: the layer's own parameters, no rounding or clamping."""
    state_bits = frac = 0

    def __init__(self, layer):
        self.layer = layer

    def acc_bits(self, m):
        return 0

    def weight_tensor(self, dtype):
        return self.layer.weight


class _IntParams(_IntOps):
    """Integer units: integer weights/bias/thresholds, clamp and floor leak (with STE)."""

    def __init__(self, weight, bias, threshold, num, frac, state_bits, fan_abs):
        self.weight, self.bias, self.threshold = weight, bias, threshold
        self.num, self.frac, self.state_bits = int(num), int(frac), int(state_bits)
        self.fan_abs = fan_abs      # per channel sum |w| (+|b|) for the width check

    @classmethod
    def from_layer(cls, layer):
        w = None if layer.weights is None else torch.as_tensor(layer.weights.astype(np.int64))
        b = None if layer.bias is None else torch.as_tensor(layer.bias.astype(np.int64))
        thr = torch.as_tensor(layer.threshold.astype(np.int64))
        fan = layer.fan_in_abs_sum()
        bmax = 0 if layer.bias is None else int(np.abs(layer.bias.astype(np.int64)).max())
        return cls(w, b, thr, layer.beta_num, layer.beta_frac_bits, layer.state_bits,
                   (int(fan.max()), bmax))

    @classmethod
    def from_fake_quant(cls, layer, qp, num, frac, state_bits):
        w = b = None
        if layer.weight is not None:
            s = torch.as_tensor(qp["scale"], dtype=torch.float32)
            s_w = s.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
            w = _ste(layer.weight / s_w, torch.as_tensor(qp["weights"], dtype=torch.float32))
            if layer.bias is not None:
                b = _ste(layer.bias / s, torch.as_tensor(qp["bias"], dtype=torch.float32))
            fan = int(np.abs(qp["weights"]).reshape(layer.c_out, -1).sum(1).max())
        else:
            fan = layer.kernel * layer.kernel
        bmax = 0 if qp["bias"] is None else int(np.abs(qp["bias"]).max())
        thr = torch.as_tensor(qp["threshold"])
        return cls(w, b, thr, num, frac, state_bits, (fan, bmax))

    def acc_bits(self, m):
        fan, bmax = self.fan_abs
        return (fan * m + bmax + (1 << (self.state_bits - 1))).bit_length() + 1

    def weight_tensor(self, dtype):
        if self.weight is None:
            return None
        return self.weight.to(dtype)
