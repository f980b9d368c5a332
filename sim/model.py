"""The model directory: load, validate and save (the one module that knows the format).

A model directory holds ``model.json`` plus one ``.npy`` file per array and the ROM
images that the hardware loads. The format is fixed by the project's fixed-point
contract (docs/semantics.md); this module is the only place that reads or writes it.
Everyone else (the reference, the quantizer, the hardware generator, the board build)
goes through :func:`load_model` and :func:`save_model`.

Every problem with a model directory raises :class:`ModelError` with a one-line
message that names the file and the field, for example::

    models/x/model.json: layers[1].acc_bits: 17 is too small, the worst case needs 19

Only numpy is needed here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .fsutil import replace_dir
from .geometry import conv_out_size
from .registry import KINDS, SynapseError, is_int

__all__ = [
    "FORMAT", "VERSION", "VERSIONS", "INPUT", "LAYER_TYPES", "RESETS", "READOUTS",
    "MAX_TIMESTEPS", "MAX_DT_US", "MAX_TENSOR_SIZE", "MAX_JSON_DEPTH",
    "ModelError", "InputSpec", "Synapse", "Current", "Layer", "Model",
    "conv_out_size", "load_model", "save_model", "validate_model", "rom_words",
    "write_readmemh", "with_acc_bits", "chain_problem",
]

FORMAT = "snn-fixed-point"
#: The version this module writes.
VERSION = 2
#: The versions it reads (a v1 model is read into the v2 structure and means the same).
VERSIONS = (1, 2)
#: The name of the network input as a synapse source.
INPUT = "input"
#: The layer types of a version-1 model (one synapse per layer, from the layer before).
LAYER_TYPES = ("conv2d", "linear", "sumpool2d")
RESETS = ("subtract", "zero", "none")
READOUTS = ("spike_count", "membrane")

#: Widths are capped so that every intermediate of the reference fits in int64:
#: ``acc_bits <= 62`` and ``state_bits + frac_bits <= 62`` for the leak product.
MAX_STATE_BITS = 32
MAX_WEIGHT_BITS = 16
MAX_ACC_BITS = 62
MAX_FRAC_BITS = 24
#: Limits of this implementation on the v2 fields (a spike count fits uint16; delay
#: lines are kept in memory).
MAX_SPIKE_LIMIT = 65535
MAX_DELAY = 65535
MAX_TAPS = 1024

#: Limits of legal values that no build could use (docs/semantics.md, "Limits"); each is
#: checked before anything is allocated. ``timesteps`` fits the 16-bit step index of the
#: hardware's end-of-step token and of the board protocol; ``dt_us`` fits its 32-bit
#: field of the board's version answer.
MAX_TIMESTEPS = (1 << 16) - 1
MAX_DT_US = (1 << 32) - 1
#: Values of one tensor (the input ``P * H * W``, every layer's output).
MAX_TENSOR_SIZE = 1 << 24
#: Nesting depth of ``model.json`` (objects and lists); a legal file needs 7 plus ``meta``.
MAX_JSON_DEPTH = 64

_TOP_KEYS = {"format", "version", "input", "readout", "layers"}
_TOP_OPTIONAL = {"roms", "meta"}
_INPUT_KEYS = {"shape", "dt_us", "timesteps", "count_clip"}
_LAYER_KEYS = {"name", "type", "in_shape", "out_shape", "kernel", "stride", "padding",
               "weights", "bias", "weight_bits", "state_bits", "acc_bits", "beta",
               "threshold", "reset"}
_LAYER_OPTIONAL = {"scale"}
_LAYER2_KEYS = {"name", "out_shape", "synapses", "bias", "state_bits", "acc_bits", "beta",
                "threshold", "reset"}
_LAYER2_OPTIONAL = {"spike_limit", "v_min", "current"}
_SYNAPSE_KEYS = {"source", "type", "kernel", "stride", "padding", "weights", "weight_bits"}
_SYNAPSE_OPTIONAL = {"delay", "taps", "scale"}
_CURRENT_KEYS = {"beta", "state_bits"}
_ARRAY_KEYS = {"file", "sha256"}
_BETA_KEYS = {"num", "frac_bits"}


class ModelError(ValueError):
    """A model directory (or a model built in memory) breaks the format or the contract.

    The message is one line and names the file and the field at fault.
    """


@dataclass(frozen=True)
class InputSpec:
    """The input of a network: sensor shape and binning.

    Attributes
    ----------
    shape : tuple of int
        ``(P, H, W)``: polarities, rows, columns.
    dt_us : int
        Length of one time step in microseconds.
    timesteps : int
        Number of steps ``T`` per sample.
    count_clip : int
        Events at one ``(p, y, x)`` within one step are clipped to this count.
    """
    shape: tuple
    dt_us: int
    timesteps: int
    count_clip: int = 1

    @property
    def size(self):
        return int(np.prod(self.shape))


@dataclass
class Synapse:
    """One edge into a layer (contract version 2).

    Attributes
    ----------
    source : str or None
        ``"input"`` or a layer name; ``None`` means the layer before (the network input
        for the first layer) and is filled in by :func:`validate_model`.
    type : str
        The synapse kind, a name in :data:`sim.registry.KINDS`.
    kernel, stride, padding : int or None
        Geometry of the spatial kinds, ``None`` for the others.
    weights : numpy.ndarray or None
        The kind's weight shape, with a leading ``taps`` axis when ``taps > 1``;
        ``None`` for a kind without weights.
    weight_bits : int or None
    delay : int
        ``d >= 0``: tap ``j`` adds the source's counts of step ``k - d - j``.
    taps : int
        ``D >= 1``.
    scale : float or None
        The float value of one state unit per weight unit (exporter reports only).
    in_shape : tuple or None
        The shape this synapse reads its source as (a ``linear`` synapse sees the
        flattened ``(N,)``); ``None`` is filled in from the source by
        :func:`validate_model`, a given value must agree with it.
    """
    source: str | None
    type: str
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    weights: np.ndarray | None = None
    weight_bits: int | None = None
    delay: int = 0
    taps: int = 1
    scale: float | None = None
    in_shape: tuple | None = None

    @property
    def kind(self):
        """The :class:`sim.registry.Kind` of this synapse."""
        return KINDS[self.type]

    def tap_weights(self, j):
        """The weights of tap ``j`` (the kind's weight shape)."""
        if self.weights is None:
            return None
        return self.weights[j] if self.taps > 1 else self.weights

    @property
    def n_weights(self):
        return 0 if self.weights is None else int(self.weights.size)


class _StateRange:
    """``state_min`` and ``state_max`` of a signed ``state_bits``-wide state."""

    @property
    def state_min(self):
        return -(1 << (self.state_bits - 1))

    @property
    def state_max(self):
        return (1 << (self.state_bits - 1)) - 1


@dataclass
class Current(_StateRange):
    """The current state of a current-based (CubaLIF) layer: its own leak and width."""
    beta_num: int
    beta_frac_bits: int
    state_bits: int


#: "not given" for the version-1 keyword arguments of :class:`Layer` (``None`` is a value)
_UNSET = object()


def _synapse_property(key, doc):
    def get(self):
        return getattr(self.synapse, key)

    def set_(self, value):
        setattr(self.synapse, key, value)
    return property(get, set_, doc=doc)


@dataclass(init=False)
class Layer(_StateRange):
    """One layer of the network: a population of neurons with a list of synapses.

    ``threshold`` is always stored as an ``int64`` array of one entry per output channel;
    ``threshold_per_channel`` records whether the file gave one value or a list. Shapes
    are ``(C, H, W)`` or ``(N,)`` (then ``N`` channels). ``bias`` is ``(C_out,)`` or
    ``None``. ``spike_limit``, ``v_min`` and ``current`` are the v2 neuron fields; their
    defaults give version-1 behaviour.

    A layer can also be built the version-1 way, with ``type``, ``in_shape``,
    ``kernel``, ``stride``, ``padding``, ``weights``, ``weight_bits`` and ``scale``
    instead of ``synapses``: that is one synapse from the layer before (given together
    with one synapse, they update a copy of it: ``dataclasses.replace(layer,
    weight_bits=6)`` works as in version 1). For a layer with
    one synapse those names stay readable (and writable) attributes, so code written for
    chains keeps working; on a layer with several synapses they raise
    :class:`ModelError`.
    """
    name: str
    out_shape: tuple
    synapses: list
    bias: np.ndarray | None
    state_bits: int
    acc_bits: int
    beta_num: int
    beta_frac_bits: int
    threshold: np.ndarray
    reset: str
    threshold_per_channel: bool = False
    spike_limit: int = 1
    v_min: int | None = None
    current: Current | None = None

    def __init__(self, name, type=_UNSET, in_shape=_UNSET, out_shape=None, kernel=_UNSET,
                 stride=_UNSET, padding=_UNSET, weights=_UNSET, bias=None, weight_bits=_UNSET,
                 state_bits=None, acc_bits=None, beta_num=None, beta_frac_bits=None,
                 threshold=None, reset=None, threshold_per_channel=False, scale=_UNSET, *,
                 synapses=None, spike_limit=1, v_min=None, current=None):
        v1 = {k: x for k, x in dict(type=type, in_shape=in_shape, kernel=kernel,
                                     stride=stride, padding=padding, weights=weights,
                                     weight_bits=weight_bits, scale=scale).items()
              if x is not _UNSET}
        if synapses is None:
            if v1.get("type") is None:
                raise TypeError("Layer needs either synapses or a version-1 type")
            if v1.get("in_shape") is not None:
                v1["in_shape"] = tuple(v1["in_shape"])
            synapses = [Synapse(None, **v1)]
        else:
            # dataclasses.replace(layer, weights=...) on a single-synapse layer: the
            # version-1 fields given update (a copy of) its synapse
            if v1:
                if len(synapses) != 1:
                    raise TypeError("the version-1 synapse fields need exactly one synapse")
                synapses = [replace(synapses[0], **v1)]
        self.name = name
        self.out_shape = tuple(out_shape) if out_shape is not None else None
        self.synapses = list(synapses)
        self.bias = bias
        self.state_bits = state_bits
        self.acc_bits = acc_bits
        self.beta_num = beta_num
        self.beta_frac_bits = beta_frac_bits
        self.threshold = threshold
        self.reset = reset
        self.threshold_per_channel = threshold_per_channel
        self.spike_limit = spike_limit
        self.v_min = v_min
        self.current = current

    # -- the version-1 view of a single-synapse layer -----------------------------------------
    @property
    def synapse(self):
        """The layer's only synapse; :class:`ModelError` when it has several."""
        if len(self.synapses) != 1:
            raise ModelError(f"layer {self.name!r} has {len(self.synapses)} synapses; "
                             f"this needs a layer with exactly one")
        return self.synapses[0]

    type = _synapse_property("type", "Kind of the only synapse (version-1 ``type``).")
    in_shape = _synapse_property("in_shape", "Input shape of the only synapse.")
    kernel = _synapse_property("kernel", "Kernel of the only synapse.")
    stride = _synapse_property("stride", "Stride of the only synapse.")
    padding = _synapse_property("padding", "Padding of the only synapse.")
    weights = _synapse_property("weights", "Weights of the only synapse.")
    weight_bits = _synapse_property("weight_bits", "Weight width of the only synapse.")
    scale = _synapse_property("scale", "Scale of the only synapse.")

    # -- derived quantities -------------------------------------------------------
    @property
    def n_in(self):
        return int(np.prod(self.in_shape))

    @property
    def n_out(self):
        return int(np.prod(self.out_shape))

    @property
    def c_out(self):
        return int(self.out_shape[0])

    @property
    def c_in(self):
        return int(self.in_shape[0])


    @property
    def has_leak(self):
        return self.beta_num != (1 << self.beta_frac_bits)

    @property
    def is_plain(self):
        """Version-1 neurons: single spikes, no lower bound, no current state."""
        return self.spike_limit == 1 and self.v_min is None and self.current is None

    def threshold_per_neuron(self):
        """Threshold of every output neuron, flattened in ``(C, H, W)`` order."""
        per_channel = self.threshold.astype(np.int64)
        return np.repeat(per_channel, self.n_out // self.c_out)

    def _fan_in(self, syn):
        return syn.kind.fan_in_abs(syn, tuple(self.out_shape))

    def fan_in_abs_sum(self):
        """``sum |w|`` over the fan-in and taps of all synapses, per output channel
        (padding ignored: an upper bound; each input count taken as 1)."""
        total = np.zeros(self.c_out, dtype=np.int64)
        for syn in self.synapses:
            total += np.asarray(self._fan_in(syn), dtype=np.int64)
        return total

    def worst_case_bound(self, count_clip=1):
        """``B`` of the contract: the largest magnitude the accumulator can reach in one step.

        ``count_clip`` is the largest count a spike of each synapse's source carries
        (``m_src``): one integer for every synapse, or a sequence with one per synapse.
        """
        ms = list(count_clip) if isinstance(count_clip, (list, tuple)) else \
            [count_clip] * len(self.synapses)
        # Python integers: a huge count_clip from a file must not wrap around in int64
        b = [0] * self.c_out
        for syn, m in zip(self.synapses, ms):
            b = [x + int(f) * int(m) for x, f in zip(b, self._fan_in(syn))]
        if self.bias is not None:
            b = [x + abs(int(y)) for x, y in zip(b, self.bias.tolist())]
        bound = max(b) + (1 << (self.state_bits - 1))
        if self.current is not None:
            bound += 1 << (self.current.state_bits - 1)
        return bound

    def required_acc_bits(self, count_clip=1):
        """The smallest ``acc_bits`` the contract allows for this layer."""
        return self.worst_case_bound(count_clip).bit_length() + 1

    def weight_count(self):
        """Number of stored weights over all synapses (0 for pooling)."""
        return sum(syn.n_weights for syn in self.synapses)


@dataclass
class Model:
    """A whole network: input binning, layers in evaluation order, and readout.

    ``version`` is the format version the model was read from (``None``: built in
    memory). It only chooses how messages name a synapse's fields (at the layer, as in
    version 1, or as ``synapses[j]``); a model is always held in the version-2 structure
    and saved as version 2.
    """
    input: InputSpec
    layers: list
    readout: str = "spike_count"
    roms: list | None = None
    meta: dict | None = None
    path: Path | None = field(default=None, compare=False)
    version: int | None = field(default=None, compare=False)

    @property
    def n_classes(self):
        return self.layers[-1].n_out

    @property
    def n_neurons(self):
        return sum(layer.n_out for layer in self.layers)

    @property
    def n_weights(self):
        return sum(layer.weight_count() for layer in self.layers)

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def index(self, name):
        """Position of layer ``name`` in evaluation order."""
        for i, layer in enumerate(self.layers):
            if layer.name == name:
                return i
        raise KeyError(name)

    def source_of(self, i, syn):
        """The source name of synapse ``syn`` of layer ``i`` (``None`` resolved)."""
        if syn.source is not None:
            return syn.source
        return INPUT if i == 0 else self.layers[i - 1].name

    def source_shape(self, name):
        """``out_shape`` of layer ``name``, or the input shape for ``"input"``."""
        return tuple(self.input.shape) if name == INPUT else tuple(self.layer(name).out_shape)

    def source_limit(self, name):
        """``m_src``: the largest count one spike of ``name`` carries."""
        return self.input.count_clip if name == INPUT else self.layer(name).spike_limit

    def count_clips(self, i):
        """``m_src`` of every synapse of layer ``i`` (the contract's acc_bits bound)."""
        return [self.source_limit(self.source_of(i, s)) for s in self.layers[i].synapses]

    def required_acc_bits(self, i):
        """The smallest ``acc_bits`` the contract allows for layer ``i``."""
        return self.layers[i].required_acc_bits(self.count_clips(i))

    def count_clip_of(self, index):
        """The ``m`` of a chain's layer ``index``: count_clip for the first, the
        source's spike limit after (1 in version 1)."""
        return self.count_clips(index)[0]


def chain_problem(model):
    """Why ``model`` is not a version-1 chain (``None`` when it is one).

    A chain has one synapse per layer, from the layer before (the input for the
    first), of a version-1 type, without delay or taps, and version-1 neurons.
    """
    for i, layer in enumerate(model.layers):
        name = layer.name
        if len(layer.synapses) != 1:
            return f"layer {name!r} has {len(layer.synapses)} synapses"
        syn = layer.synapses[0]
        prev = INPUT if i == 0 else model.layers[i - 1].name
        src = model.source_of(i, syn)
        if src != prev:
            return f"layer {name!r} reads {src!r}, not the layer before it"
        if syn.type not in LAYER_TYPES:
            return f"layer {name!r} has a {syn.type} synapse"
        if syn.delay != 0 or syn.taps != 1:
            return f"layer {name!r} has a delayed synapse (delay {syn.delay}, taps {syn.taps})"
        if layer.spike_limit != 1:
            return f"layer {name!r} is multi-spike (spike_limit {layer.spike_limit})"
        if layer.v_min is not None:
            return f"layer {name!r} has v_min"
        if layer.current is not None:
            return f"layer {name!r} is current-based"
    return None


# -- validation -------------------------------------------------------------------------

_is_int = is_int


def validate_model(model, where="model"):
    """Check every rule of the contract on an in-memory model.

    Synapses with ``source=None`` get the name of the layer before (or ``"input"``) and
    synapses with ``in_shape=None`` the shape they read from their source.

    Parameters
    ----------
    model : Model
    where : str
        Name used at the head of error messages (usually the ``model.json`` path).

    Raises
    ------
    ModelError
        On the first broken rule, naming the field (and the layer and synapse).
    """
    inp = model.input
    if model.readout not in READOUTS:
        raise ModelError(f"{where}: readout: unknown readout {model.readout!r}, "
                         f"expected one of {', '.join(READOUTS)}")
    _validate_input(inp, where)
    if not model.layers:
        raise ModelError(f"{where}: layers: the network has no layers")
    index = {}
    for i, layer in enumerate(model.layers):
        at = f"{where}: layers[{i}]"
        if not isinstance(layer.name, str) or not layer.name.isidentifier():
            raise ModelError(f"{at}.name: {layer.name!r} is not a valid identifier")
        if layer.name == INPUT:
            raise ModelError(f"{at}.name: {INPUT!r} names the network input")
        if layer.name in index:
            raise ModelError(f"{at}.name: duplicate layer name {layer.name!r}")
        index[layer.name] = i
    for i, layer in enumerate(model.layers):
        at = f"{where}: layers[{i}] ({layer.name})"
        _validate_neurons(layer, at)
        if not isinstance(layer.synapses, list) or not layer.synapses:
            raise ModelError(f"{at}.synapses: a layer needs at least one synapse")
        for j, syn in enumerate(layer.synapses):
            v1_names = model.version == 1 or (model.version is None and
                                              len(layer.synapses) == 1)
            at_s = at if v1_names else f"{at}.synapses[{j}]"
            _validate_synapse(model, i, layer, syn, at, at_s, index)
        _validate_layer_params(layer, at)
        # exact accumulation
        need = model.required_acc_bits(i)
        if layer.acc_bits < need:
            raise ModelError(f"{at}.acc_bits: {layer.acc_bits} is too small, the worst case "
                             f"needs {need}")
    return model


def _zero_delay_cycle(model, i, s, index):
    """Edges ``layers[i] -> ... -> layers[s]`` along same-step synapses, if any."""
    # a breadth-first search over d = 0 edges from layer i
    reach = {i: None}
    queue = [i]
    while queue:
        a = queue.pop(0)
        for b, lay in enumerate(model.layers):
            for syn in lay.synapses:
                src = model.source_of(b, syn)
                if src in index and index[src] == a and syn.delay == 0 and b not in reach:
                    reach[b] = a
                    queue.append(b)
    if s not in reach:
        return None
    path = [s]
    while path[-1] != i:
        path.append(reach[path[-1]])
    return " -> ".join(model.layers[p].name for p in reversed(path))


def _validate_synapse(model, i, layer, syn, at_layer, at, index):
    if not isinstance(syn, Synapse):
        raise ModelError(f"{at}: expected a Synapse, got {type(syn).__name__}")
    if syn.source is None:
        syn.source = model.source_of(i, syn)
    src = syn.source
    if src != INPUT and src not in index:
        raise ModelError(f"{at}.source: unknown source {src!r}: not 'input' nor a layer name")
    if syn.type not in KINDS:
        raise ModelError(f"{at}.type: unknown synapse kind {syn.type!r}, expected one of "
                         f"{', '.join(KINDS)}")
    kind = KINDS[syn.type]
    for key, lo, hi in (("delay", 0, MAX_DELAY), ("taps", 1, MAX_TAPS)):
        value = getattr(syn, key)
        if not _is_int(value) or not lo <= value <= hi:
            raise ModelError(f"{at}.{key}: {value!r} is outside {lo}..{hi}")
    if src != INPUT and index[src] >= i and syn.delay < 1:
        s = index[src]
        what = "itself" if s == i else f"the later layer {src!r}"
        cycle = _zero_delay_cycle(model, i, s, index)
        edges = (f"zero-delay cycle {cycle} -> {layer.name}" if cycle else
                 f"edge {src} -> {layer.name}")
        raise ModelError(f"{at}.delay: 0 on a synapse from {what} ({edges}); a layer reads "
                         f"itself or a later layer only with delay >= 1")
    src_shape = model.source_shape(src)
    want_in = kind.input_shape(src_shape)
    if syn.in_shape is None:
        syn.in_shape = want_in
    elif not isinstance(syn.in_shape, tuple) or tuple(syn.in_shape) != tuple(want_in):
        desc = "the network input" if src == INPUT else f"the output of {src!r}"
        raise ModelError(f"{at}.in_shape: {list(syn.in_shape)} does not chain with {desc} "
                         f"{list(src_shape)} ({int(np.prod(src_shape))} values)")
    in_shape = tuple(syn.in_shape)
    try:
        kind.check(syn, in_shape)
    except SynapseError as e:
        raise ModelError(f"{at}{'.' + e.field if e.field else ''}: {e.message}") from None
    out = layer.out_shape
    want_out = kind.out_shape(syn, in_shape, out[0])
    if tuple(out) != tuple(want_out):
        where = at_layer if at == at_layer else at
        raise ModelError(f"{where}: the {syn.type} synapse makes {list(want_out)} from {src!r} "
                         f"{list(src_shape)} (kernel, stride, padding), not the layer's "
                         f"out_shape {list(out)}")
    base = kind.weight_shape(syn, in_shape, tuple(out))
    if base is None:
        if syn.weights is not None:
            raise ModelError(f"{at}.weights: a {syn.type} synapse has null weights")
        if syn.weight_bits is not None and not _is_int(syn.weight_bits):
            raise ModelError(f"{at}.weight_bits: expected an integer or null")
    else:
        if not _is_int(syn.weight_bits) or not 2 <= syn.weight_bits <= MAX_WEIGHT_BITS:
            raise ModelError(f"{at}.weight_bits: {syn.weight_bits!r} is outside "
                             f"2..{MAX_WEIGHT_BITS}")
        if syn.weights is None:
            raise ModelError(f"{at}.weights: a {syn.type} synapse needs weights")
        w = syn.weights
        if not isinstance(w, np.ndarray) or not np.issubdtype(w.dtype, np.integer):
            raise ModelError(f"{at}.weights: expected an integer array, got dtype "
                             f"{getattr(w, 'dtype', type(w).__name__)}")
        want = (syn.taps, *base) if syn.taps > 1 else tuple(base)
        if tuple(w.shape) != want:
            taps = f"taps {syn.taps} x " if syn.taps > 1 else ""
            raise ModelError(f"{at}.weights: shape {tuple(w.shape)} does not match "
                             f"{tuple(want)} ({taps}{syn.type} weights from the shapes"
                             f"{', kernel' if kind.geometry else ''})")
        lim = (1 << (syn.weight_bits - 1)) - 1
        # min/max in the array's own dtype: a cast to int64 could wrap (uint64, int64 min)
        if w.size and (int(w.min()) < -lim or int(w.max()) > lim):
            bad = int(w.min()) if int(w.min()) < -lim else int(w.max())
            raise ModelError(f"{at}.weights: value {bad} is outside the {syn.weight_bits}-bit "
                             f"symmetric range -{lim}..{lim}")
    if syn.scale is not None and not isinstance(syn.scale, (int, float)):
        raise ModelError(f"{at}.scale: expected a number or null, got {syn.scale!r}")


def _check_tensor_size(shape, at):
    """Refuse a shape of more than :data:`MAX_TENSOR_SIZE` values (Python integers: no wrap)."""
    if not all(_is_int(s) for s in shape):
        return                          # the caller's own check names the bad entry
    size = 1
    for s in shape:
        size *= int(s)
    if size > MAX_TENSOR_SIZE:
        raise ModelError(f"{at}: {list(shape)} holds {size} values, more than the limit "
                         f"MAX_TENSOR_SIZE = {MAX_TENSOR_SIZE}")


def _validate_input(inp, where):
    """The ``input`` section: shape, binning and the limits of a buildable input."""
    if len(inp.shape) != 3 or not all(_is_int(s) and s > 0 for s in inp.shape):
        raise ModelError(f"{where}: input.shape: expected [P, H, W] of positive integers, "
                         f"got {list(inp.shape)}")
    _check_tensor_size(inp.shape, f"{where}: input.shape")
    limits = {"dt_us": MAX_DT_US, "timesteps": MAX_TIMESTEPS, "count_clip": None}
    for key, top in limits.items():
        value = getattr(inp, key)
        if not _is_int(value) or value < 1:
            raise ModelError(f"{where}: input.{key}: expected a positive integer, got {value!r}")
        if top is not None and value > top:
            raise ModelError(f"{where}: input.{key}: {value} is above the limit "
                             f"MAX_{key.upper()} = {top}")


def _validate_neurons(layer, at):
    if not isinstance(layer.reset, str) or layer.reset not in RESETS:
        raise ModelError(f"{at}.reset: unknown reset mode {layer.reset!r}, expected one of "
                         f"{', '.join(RESETS)}")
    out = layer.out_shape
    if not isinstance(out, tuple) or len(out) not in (1, 3) or \
            not all(_is_int(s) and s > 0 for s in out):
        raise ModelError(f"{at}.out_shape: expected [C, H, W] or [N] of positive integers, "
                         f"got {list(out) if isinstance(out, tuple) else out!r}")
    _check_tensor_size(out, f"{at}.out_shape")
    # widths
    if not _is_int(layer.state_bits) or not 2 <= layer.state_bits <= MAX_STATE_BITS:
        raise ModelError(f"{at}.state_bits: {layer.state_bits!r} is outside 2..{MAX_STATE_BITS}")
    if not _is_int(layer.acc_bits) or not 2 <= layer.acc_bits <= MAX_ACC_BITS:
        raise ModelError(f"{at}.acc_bits: {layer.acc_bits!r} is outside 2..{MAX_ACC_BITS}")
    if not _is_int(layer.spike_limit) or not 1 <= layer.spike_limit <= MAX_SPIKE_LIMIT:
        raise ModelError(f"{at}.spike_limit: {layer.spike_limit!r} is outside "
                         f"1..{MAX_SPIKE_LIMIT}")
    if layer.v_min is not None and (not _is_int(layer.v_min)
                                    or not layer.state_min <= layer.v_min <= 0):
        raise ModelError(f"{at}.v_min: {layer.v_min!r} is outside {layer.state_min}..0 "
                         f"(the {layer.state_bits}-bit state range up to 0)")
    cur = layer.current
    if cur is not None:
        if not isinstance(cur, Current):
            raise ModelError(f"{at}.current: expected a Current, got {type(cur).__name__}")
        if not _is_int(cur.state_bits) or not 2 <= cur.state_bits <= MAX_STATE_BITS:
            raise ModelError(f"{at}.current.state_bits: {cur.state_bits!r} is outside "
                             f"2..{MAX_STATE_BITS}")
        _validate_beta(cur.beta_num, cur.beta_frac_bits, f"{at}.current.beta")
        if cur.state_bits + cur.beta_frac_bits > MAX_ACC_BITS:
            raise ModelError(f"{at}.current: state_bits + beta.frac_bits must not exceed "
                             f"{MAX_ACC_BITS}")


def _validate_beta(num, frac, at):
    if not _is_int(frac) or not 0 <= frac <= MAX_FRAC_BITS:
        raise ModelError(f"{at}.frac_bits: {frac!r} is outside 0..{MAX_FRAC_BITS}")
    if not _is_int(num) or not 0 <= num <= (1 << frac):
        raise ModelError(f"{at}.num: {num!r} is outside 0..2**frac_bits = {1 << frac}")


def _validate_layer_params(layer, at):
    c_out = layer.out_shape[0]
    if layer.bias is not None:
        b = layer.bias
        if not isinstance(b, np.ndarray) or not np.issubdtype(b.dtype, np.integer):
            raise ModelError(f"{at}.bias: expected an integer array")
        if tuple(b.shape) != (c_out,):
            raise ModelError(f"{at}.bias: shape {tuple(b.shape)} does not match ({c_out},)")
        if b.size and (int(b.min()) < layer.state_min or int(b.max()) > layer.state_max):
            raise ModelError(f"{at}.bias: values must fit the {layer.state_bits}-bit state, "
                             f"got {int(b.min())}..{int(b.max())}")
    # leak
    _validate_beta(layer.beta_num, layer.beta_frac_bits, f"{at}.beta")
    # threshold
    thr = layer.threshold
    if not isinstance(thr, np.ndarray) or thr.ndim != 1 or thr.shape[0] != c_out:
        raise ModelError(f"{at}.threshold: expected one value or one per output channel "
                         f"({c_out})")
    if thr.size and (thr.min() < 1 or thr.max() > layer.state_max):
        raise ModelError(f"{at}.threshold: values must be positive and fit the "
                         f"{layer.state_bits}-bit state (1..{layer.state_max}), got "
                         f"{int(thr.min())}..{int(thr.max())}")
    if layer.state_bits + layer.beta_frac_bits > MAX_ACC_BITS:
        raise ModelError(f"{at}: state_bits + beta.frac_bits must not exceed {MAX_ACC_BITS}")


# -- loading ----------------------------------------------------------------------------

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_keys(obj, required, optional, at):
    if not isinstance(obj, dict):
        raise ModelError(f"{at}: expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise ModelError(f"{at}: unknown key {unknown[0]!r}")
    missing = sorted(required - set(obj))
    if missing:
        raise ModelError(f"{at}: missing key {missing[0]!r}")


def _load_array(root, ref, at):
    _check_keys(ref, _ARRAY_KEYS, set(), at)
    name = ref["file"]
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise ModelError(f"{at}.file: {name!r} must be a plain file name inside the model "
                         f"directory")
    path = root / name
    if not path.is_file():
        raise ModelError(f"{path}: missing array file (named by {at.split(': ', 1)[-1]}.file)")
    digest = _sha256(path)
    if digest != ref["sha256"]:
        raise ModelError(f"{path}: sha256 mismatch: model.json says {str(ref['sha256'])[:16]}..., "
                         f"the file has {digest[:16]}...")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy failure is a bad file
        raise ModelError(f"{path}: not a readable .npy array: {e}") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.integer):
        raise ModelError(f"{path}: expected an integer array, got dtype {arr.dtype}")
    # A Fortran-ordered .npy is accepted: its header says so and np.load returns the same
    # values as for the C-ordered file; the copy below only makes the memory layout the
    # one the compiled kernels expect (tests/sim/test_bad_input.py checks both files).
    return np.ascontiguousarray(arr)


def _int_list(value, at, n=None):
    if not isinstance(value, list) or not all(_is_int(v) for v in value) or \
            (n is not None and len(value) != n):
        want = f"a list of {n} integers" if n else "a list of integers"
        raise ModelError(f"{at}: expected {want}, got {value!r}")
    return tuple(int(v) for v in value)


def _opt_int(value, at):
    if value is not None and not _is_int(value):
        raise ModelError(f"{at}: expected an integer or null, got {value!r}")
    return value


def _threshold(thr, out_shape, at):
    per_channel = isinstance(thr, list)
    if (per_channel and any(_is_int(t) and abs(t) > 1 << 62 for t in thr)) or \
            (_is_int(thr) and abs(thr) > 1 << 62):
        raise ModelError(f"{at}.threshold: {thr!r} is far outside any state range "
                         f"(|threshold| above 2**62)")
    if per_channel:
        return np.array(_int_list(thr, f"{at}.threshold"), dtype=np.int64), True
    if _is_int(thr):
        return np.full(out_shape[0] if out_shape else 1, int(thr), dtype=np.int64), False
    raise ModelError(f"{at}.threshold: expected an integer or a list of integers, got {thr!r}")


def _out_shape(ld, at):
    out_shape = _int_list(ld["out_shape"], f"{at}.out_shape")
    if not all(d > 0 for d in out_shape):
        raise ModelError(f"{at}.out_shape: expected positive integers, got {list(out_shape)}")
    _check_tensor_size(out_shape, f"{at}.out_shape")      # before the threshold's np.full
    return out_shape


def _strings(obj, keys, at):
    for key in keys:
        if not isinstance(obj[key], str):
            raise ModelError(f"{at}.{key}: expected a string, got {obj[key]!r}")


def _scale(obj, at):
    scale = obj.get("scale")
    if scale is not None and (not isinstance(scale, (int, float)) or isinstance(scale, bool)):
        raise ModelError(f"{at}.scale: expected a number or null, got {scale!r}")
    return None if scale is None else float(scale)


def _neuron_fields(ld, root, at):
    """The fields every layer has (both versions), as Layer keyword arguments."""
    _check_keys(ld["beta"], _BETA_KEYS, set(), f"{at}.beta")
    out_shape = _out_shape(ld, at)
    thr, per_channel = _threshold(ld["threshold"], out_shape, at)
    bias = None if ld["bias"] is None else _load_array(root, ld["bias"], f"{at}.bias")
    return dict(name=ld["name"], out_shape=out_shape, bias=bias,
                state_bits=ld["state_bits"], acc_bits=ld["acc_bits"],
                beta_num=ld["beta"]["num"], beta_frac_bits=ld["beta"]["frac_bits"],
                threshold=thr, threshold_per_channel=per_channel, reset=ld["reset"])


def _parse_layer_v1(ld, root, at, prev):
    """A version-1 layer: one synapse from the layer before."""
    _check_keys(ld, _LAYER_KEYS, _LAYER_OPTIONAL, at)
    weights = None if ld["weights"] is None else _load_array(root, ld["weights"], f"{at}.weights")
    scale = _scale(ld, at)
    _strings(ld, ("name", "type", "reset"), at)
    neuron = _neuron_fields(ld, root, at)
    syn = Synapse(source=prev, type=ld["type"],
                  kernel=_opt_int(ld["kernel"], f"{at}.kernel"),
                  stride=_opt_int(ld["stride"], f"{at}.stride"),
                  padding=_opt_int(ld["padding"], f"{at}.padding"),
                  weights=weights,
                  weight_bits=_opt_int(ld["weight_bits"], f"{at}.weight_bits"),
                  scale=scale, in_shape=_int_list(ld["in_shape"], f"{at}.in_shape"))
    return Layer(synapses=[syn], **neuron)


def _parse_layer_v2(ld, root, at, prev):
    """A version-2 layer: neuron fields, a list of synapses, optional v2 neuron fields."""
    _check_keys(ld, _LAYER2_KEYS, _LAYER2_OPTIONAL, at)
    _strings(ld, ("name", "reset"), at)
    neuron = _neuron_fields(ld, root, at)
    if not isinstance(ld["synapses"], list):
        raise ModelError(f"{at}.synapses: expected a list")
    synapses = []
    for j, sd in enumerate(ld["synapses"]):
        at_s = f"{at}.synapses[{j}]"
        _check_keys(sd, _SYNAPSE_KEYS, _SYNAPSE_OPTIONAL, at_s)
        _strings(sd, ("source", "type"), at_s)
        weights = None if sd["weights"] is None else \
            _load_array(root, sd["weights"], f"{at_s}.weights")
        synapses.append(Synapse(
            source=sd["source"], type=sd["type"],
            kernel=_opt_int(sd["kernel"], f"{at_s}.kernel"),
            stride=_opt_int(sd["stride"], f"{at_s}.stride"),
            padding=_opt_int(sd["padding"], f"{at_s}.padding"),
            weights=weights, weight_bits=_opt_int(sd["weight_bits"], f"{at_s}.weight_bits"),
            delay=sd.get("delay", 0), taps=sd.get("taps", 1), scale=_scale(sd, at_s)))
    current = ld.get("current")
    if current is not None:
        _check_keys(current, _CURRENT_KEYS, set(), f"{at}.current")
        _check_keys(current["beta"], _BETA_KEYS, set(), f"{at}.current.beta")
        current = Current(beta_num=current["beta"]["num"],
                          beta_frac_bits=current["beta"]["frac_bits"],
                          state_bits=current["state_bits"])
    return Layer(synapses=synapses, spike_limit=ld.get("spike_limit", 1),
                 v_min=ld.get("v_min"), current=current, **neuron)


def _json_depth(doc):
    """Nesting depth of a parsed JSON document (iterative: no recursion limit)."""
    depth, level = 0, [doc]
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return depth
        level = [v for x in level if isinstance(x, (dict, list))
                 for v in (x.values() if isinstance(x, dict) else x)
                 if isinstance(v, (dict, list))]
    return depth


def _read_json(jpath):
    """``model.json`` parsed, with a one-line error for bad text and deep nesting."""
    try:
        doc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{jpath}: malformed JSON: {e}") from None
    except RecursionError:
        # the parser recurses per level: far deeper than MAX_JSON_DEPTH
        raise ModelError(f"{jpath}: nested deeper than the limit MAX_JSON_DEPTH = "
                         f"{MAX_JSON_DEPTH}") from None
    if _json_depth(doc) > MAX_JSON_DEPTH:
        raise ModelError(f"{jpath}: nested deeper than the limit MAX_JSON_DEPTH = "
                         f"{MAX_JSON_DEPTH}")
    return doc


def _check_version(version, where):
    """``version`` must be one of :data:`VERSIONS`, as a JSON integer (not true, not 1.0)."""
    if not _is_int(version) or version not in VERSIONS:
        raise ModelError(f"{where}: version: this tool reads versions "
                         f"{', '.join(map(str, VERSIONS))} (an integer), got {version!r}")


def load_model(path):
    """Load and validate a model directory.

    Parameters
    ----------
    path : str or Path
        The directory (or its ``model.json``).

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        With a one-line message naming the file and the field.
    """
    path = Path(path)
    root = path.parent if path.name == "model.json" else path
    jpath = root / "model.json"
    if not root.is_dir():
        raise ModelError(f"{root}: model directory not found")
    if not jpath.is_file():
        raise ModelError(f"{jpath}: missing model.json")
    doc = _read_json(jpath)
    w = str(jpath)
    _check_keys(doc, _TOP_KEYS, _TOP_OPTIONAL, w)
    if doc["format"] != FORMAT:
        raise ModelError(f"{w}: format: expected {FORMAT!r}, got {doc['format']!r}")
    _check_version(doc["version"], w)
    _check_keys(doc["input"], _INPUT_KEYS, set(), f"{w}: input")
    inp = doc["input"]
    spec = InputSpec(shape=_int_list(inp["shape"], f"{w}: input.shape", 3),
                     dt_us=inp["dt_us"], timesteps=inp["timesteps"], count_clip=inp["count_clip"])
    if not isinstance(doc["layers"], list):
        raise ModelError(f"{w}: layers: expected a list")
    parse = _parse_layer_v1 if doc["version"] == 1 else _parse_layer_v2
    layers = []
    for i, ld in enumerate(doc["layers"]):
        prev = INPUT if i == 0 else (layers[-1].name if layers else None)
        layers.append(parse(ld, root, f"{w}: layers[{i}]", prev))
    roms = doc.get("roms")
    if roms is not None and not isinstance(roms, list):
        raise ModelError(f"{w}: roms: expected a list")
    meta = doc.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ModelError(f"{w}: meta: expected an object")
    model = Model(input=spec, layers=layers, readout=doc["readout"], roms=roms, meta=meta,
                  path=root, version=doc["version"])
    return validate_model(model, w)


# -- ROM images -------------------------------------------------------------------------

def rom_words(layer):
    """The canonical ROM image of a synapse (or a single-synapse layer): one word per
    input address.

    For ``conv2d`` the address is ``(c_in * K + ky) * K + kx``; for ``linear`` it is
    the input index (the kind's ``rom_columns``). Each word packs the weights of all
    output channels for that address, output 0 in the least significant bits, each
    ``weight_bits`` wide in two's complement. The hardware may re-pack these per lane;
    this is the exchange layout.

    Returns
    -------
    words : list of int
    width : int
        Word width in bits.
    """
    syn = layer.synapse if isinstance(layer, Layer) else layer
    wb = syn.weight_bits
    w = syn.weights.astype(np.int64)
    cols = syn.kind.rom_columns(w)                                   # (addr, C_out)
    if cols is None or syn.taps != 1:
        raise ModelError(f"a {syn.type} synapse with {syn.taps} taps has no ROM image")
    mask = (1 << wb) - 1
    words = []
    for row in cols:
        word = 0
        for j, v in enumerate(row.tolist()):
            word |= (int(v) & mask) << (j * wb)
        words.append(word)
    return words, wb * w.shape[0]


def write_readmemh(path, words, width):
    """Write ``words`` as ``$readmemh`` text, one zero-padded hex word per line."""
    digits = max(1, (width + 3) // 4)
    with open(path, "w") as f:
        for word in words:
            f.write(f"{word:0{digits}x}\n")


# -- saving -----------------------------------------------------------------------------

def _save_array(root, name, arr):
    path = root / name
    np.save(path, np.ascontiguousarray(arr))
    return {"file": name, "sha256": _sha256(path)}


def _threshold_json(layer):
    thr = [int(t) for t in layer.threshold]
    return thr if (layer.threshold_per_channel or len(set(thr)) > 1) else thr[0]


def _has_rom(syn):
    return syn.weights is not None and syn.taps == 1 and syn.kind.rom_layout is not None


def _write_rom(root, roms, layer, j, syn):
    words, width = rom_words(syn)
    rom_name = f"{_array_stem(layer, j)}.weights.hex"
    write_readmemh(root / rom_name, words, width)
    entry = {"file": rom_name, "sha256": _sha256(root / rom_name), "layer": layer.name}
    if j:
        entry["synapse"] = j
    entry.update(width=width, depth=len(words),
                 layout=syn.kind.rom_layout + "; output channel j in bits [j*wb, (j+1)*wb)")
    roms.append(entry)


def _array_stem(layer, j):
    """File stem of synapse ``j``'s arrays: ``<layer>`` for the first synapse (the
    version-1 names), ``<layer>.syn<j>`` for the others."""
    return layer.name if j == 0 else f"{layer.name}.syn{j}"


def _layer_v1_json(layer, root, roms):
    syn = layer.synapse
    ld = {
        "name": layer.name, "type": syn.type,
        "in_shape": [int(s) for s in syn.in_shape],
        "out_shape": [int(s) for s in layer.out_shape],
        "kernel": syn.kernel, "stride": syn.stride, "padding": syn.padding,
        "weights": None, "bias": None,
        "weight_bits": syn.weight_bits, "state_bits": layer.state_bits,
        "acc_bits": layer.acc_bits,
        "beta": {"num": layer.beta_num, "frac_bits": layer.beta_frac_bits},
        "threshold": _threshold_json(layer), "reset": layer.reset,
    }
    if syn.scale is not None:
        ld["scale"] = float(syn.scale)
    if syn.weights is not None:
        ld["weights"] = _save_array(root, f"{layer.name}.weights.npy", syn.weights)
    if _has_rom(syn):
        _write_rom(root, roms, layer, 0, syn)
    return ld


def _layer_v2_json(layer, root, roms):
    synapses = []
    for j, syn in enumerate(layer.synapses):
        sd = {"source": syn.source, "type": syn.type,
              "kernel": syn.kernel, "stride": syn.stride, "padding": syn.padding,
              "weights": None, "weight_bits": syn.weight_bits}
        if syn.weights is not None:
            sd["weights"] = _save_array(root, f"{_array_stem(layer, j)}.weights.npy",
                                        syn.weights)
        if syn.delay:
            sd["delay"] = int(syn.delay)
        if syn.taps != 1:
            sd["taps"] = int(syn.taps)
        if syn.scale is not None:
            sd["scale"] = float(syn.scale)
        if _has_rom(syn):
            _write_rom(root, roms, layer, j, syn)
        synapses.append(sd)
    ld = {
        "name": layer.name, "out_shape": [int(s) for s in layer.out_shape],
        "synapses": synapses, "bias": None,
        "state_bits": layer.state_bits, "acc_bits": layer.acc_bits,
        "beta": {"num": layer.beta_num, "frac_bits": layer.beta_frac_bits},
        "threshold": _threshold_json(layer), "reset": layer.reset,
    }
    if layer.spike_limit != 1:
        ld["spike_limit"] = int(layer.spike_limit)
    if layer.v_min is not None:
        ld["v_min"] = int(layer.v_min)
    if layer.current is not None:
        cur = layer.current
        ld["current"] = {"beta": {"num": cur.beta_num, "frac_bits": cur.beta_frac_bits},
                         "state_bits": cur.state_bits}
    return ld


def model_to_json(model, root, version=VERSION):
    """Write the arrays of ``model`` into ``root`` and return the ``model.json`` document.

    ``version`` 2 (the default) writes any model; ``version=1`` writes a chain
    (:func:`chain_problem` is ``None``) in the version-1 layout, for tools that read
    only version 1.
    """
    if version not in VERSIONS:
        raise ModelError(f"version: this tool writes versions {VERSIONS}, not {version!r}")
    if version == 1:
        problem = chain_problem(model)
        if problem is not None:
            raise ModelError(f"version 1 holds chains only: {problem}")
    layers = []
    roms = []
    for layer in model.layers:
        ld = (_layer_v1_json if version == 1 else _layer_v2_json)(layer, root, roms)
        if layer.bias is not None:
            ld["bias"] = _save_array(root, f"{layer.name}.bias.npy", layer.bias)
        layers.append(ld)
    doc = {
        "format": FORMAT, "version": version,
        "input": {"shape": [int(s) for s in model.input.shape], "dt_us": model.input.dt_us,
                  "timesteps": model.input.timesteps, "count_clip": model.input.count_clip},
        "readout": model.readout,
        "layers": layers,
    }
    if roms:
        doc["roms"] = roms
    if model.meta is not None:
        doc["meta"] = model.meta
    return doc


def save_model(model, path, *, overwrite=True, version=VERSION):
    """Validate ``model`` and write it as a model directory, atomically.

    The directory is written into a temporary sibling and renamed into place only when
    complete, so a failure leaves nothing half-written behind.

    Parameters
    ----------
    model : Model
    path : str or Path
        Target directory.
    overwrite : bool
        Replace an existing directory (default). With ``False`` an existing target is
        an error.
    version : int
        Format version to write: 2 (default), or 1 for a chain (see
        :func:`model_to_json`).
    """
    path = Path(path)
    validate_model(model, f"{path}/model.json")
    if path.exists() and not overwrite:
        raise ModelError(f"{path}: already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        doc = model_to_json(model, tmp, version)
        (tmp / "model.json").write_text(json.dumps(doc, indent=1) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model.path = path
    return path


def with_acc_bits(layer, count_clip=1):
    """A copy of ``layer`` (and of its synapses) with the smallest legal ``acc_bits``.

    ``count_clip``: ``m_src`` of every synapse, one integer or one per synapse
    (:meth:`Model.count_clips`).
    """
    return replace(layer, acc_bits=layer.required_acc_bits(count_clip),
                   synapses=[replace(s) for s in layer.synapses])
