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

__all__ = [
    "FORMAT", "VERSION", "VERSIONS", "LAYER_TYPES", "RESETS", "READOUTS",
    "MAX_TIMESTEPS", "MAX_DT_US", "MAX_TENSOR_SIZE", "MAX_JSON_DEPTH",
    "ModelError", "InputSpec", "Layer", "Model",
    "conv_out_size", "load_model", "save_model", "validate_model", "rom_words",
    "write_readmemh", "with_acc_bits",
]

FORMAT = "snn-fixed-point"
VERSION = 1
#: The versions :func:`load_model` reads (JSON integers only: ``true`` and ``1.0`` are not).
VERSIONS = (VERSION,)
LAYER_TYPES = ("conv2d", "linear", "sumpool2d")
RESETS = ("subtract", "zero", "none")
READOUTS = ("spike_count", "membrane")

#: Widths are capped so that every intermediate of the reference fits in int64:
#: ``acc_bits <= 62`` and ``state_bits + frac_bits <= 62`` for the leak product.
MAX_STATE_BITS = 32
MAX_WEIGHT_BITS = 16
MAX_ACC_BITS = 62
MAX_FRAC_BITS = 24

#: Limits of legal values that no build could use (docs/semantics.md, "Limits"); each is
#: checked before anything is allocated. ``timesteps`` fits the 16-bit step index of the
#: hardware's end-of-step token and of the board protocol; ``dt_us`` fits its 32-bit
#: field of the board's version answer.
MAX_TIMESTEPS = (1 << 16) - 1
MAX_DT_US = (1 << 32) - 1
#: Values of one tensor (the input ``P * H * W``, every layer's input and output).
MAX_TENSOR_SIZE = 1 << 24
#: Nesting depth of ``model.json`` (objects and lists); a legal file needs 5 plus ``meta``.
MAX_JSON_DEPTH = 64

_TOP_KEYS = {"format", "version", "input", "readout", "layers"}
_TOP_OPTIONAL = {"roms", "meta"}
_INPUT_KEYS = {"shape", "dt_us", "timesteps", "count_clip"}
_LAYER_KEYS = {"name", "type", "in_shape", "out_shape", "kernel", "stride", "padding",
               "weights", "bias", "weight_bits", "state_bits", "acc_bits", "beta",
               "threshold", "reset"}
_LAYER_OPTIONAL = {"scale"}
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
class Layer:
    """One layer of the network, with its integer parameters.

    ``weights`` is ``(C_out, C_in, K, K)`` for ``conv2d``, ``(N_out, N_in)`` for
    ``linear`` and ``None`` for ``sumpool2d``; ``bias`` is ``(C_out,)`` or ``None``.
    ``threshold`` is always stored as an ``int64`` array of one entry per output channel;
    ``threshold_per_channel`` records whether the file gave one value or a list.
    Shapes are ``(C, H, W)`` for ``conv2d`` and ``sumpool2d`` and ``(N,)`` for ``linear``.
    """
    name: str
    type: str
    in_shape: tuple
    out_shape: tuple
    kernel: int | None
    stride: int | None
    padding: int | None
    weights: np.ndarray | None
    bias: np.ndarray | None
    weight_bits: int | None
    state_bits: int
    acc_bits: int
    beta_num: int
    beta_frac_bits: int
    threshold: np.ndarray
    reset: str
    threshold_per_channel: bool = False
    scale: float | None = None

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
    def state_min(self):
        return -(1 << (self.state_bits - 1))

    @property
    def state_max(self):
        return (1 << (self.state_bits - 1)) - 1

    @property
    def has_leak(self):
        return self.beta_num != (1 << self.beta_frac_bits)

    def threshold_per_neuron(self):
        """Threshold of every output neuron, flattened in ``(C, H, W)`` order."""
        per_channel = self.threshold.astype(np.int64)
        return np.repeat(per_channel, self.n_out // self.c_out)

    def fan_in_abs_sum(self):
        """``sum |w|`` over the fan-in of every output channel (padding ignored: an upper bound)."""
        if self.type == "sumpool2d":
            return np.full(self.c_out, self.kernel * self.kernel, dtype=np.int64)
        w = np.abs(self.weights.astype(np.int64))
        return w.reshape(w.shape[0], -1).sum(axis=1)

    def worst_case_bound(self, count_clip=1):
        """``B`` of the contract: the largest magnitude the accumulator can reach in one step."""
        # Python integers: a huge count_clip from a file must not wrap around in int64
        b = [int(f) * int(count_clip) for f in self.fan_in_abs_sum().tolist()]
        if self.bias is not None:
            b = [x + abs(int(y)) for x, y in zip(b, self.bias.tolist())]
        return max(b) + (1 << (self.state_bits - 1))

    def required_acc_bits(self, count_clip=1):
        """The smallest ``acc_bits`` the contract allows for this layer."""
        return self.worst_case_bound(count_clip).bit_length() + 1

    def synapses(self):
        """Number of stored weights (0 for pooling)."""
        return 0 if self.weights is None else int(self.weights.size)


@dataclass
class Model:
    """A whole network: input binning, layers in order, and readout."""
    input: InputSpec
    layers: list
    readout: str = "spike_count"
    roms: list | None = None
    meta: dict | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def n_classes(self):
        return self.layers[-1].n_out

    @property
    def n_neurons(self):
        return sum(layer.n_out for layer in self.layers)

    @property
    def n_weights(self):
        return sum(layer.synapses() for layer in self.layers)

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def count_clip_of(self, index):
        """The ``m`` of the contract for layer ``index``: count_clip for the first, 1 after."""
        return self.input.count_clip if index == 0 else 1


def conv_out_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis (floor division, as in torch)."""
    return (size + 2 * padding - kernel) // stride + 1


# -- validation -------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _expected_out_shape(layer):
    if layer.type == "conv2d":
        c, h, w = layer.in_shape
        return (layer.weights.shape[0] if layer.weights is not None else layer.out_shape[0],
                conv_out_size(h, layer.kernel, layer.stride, layer.padding),
                conv_out_size(w, layer.kernel, layer.stride, layer.padding))
    if layer.type == "sumpool2d":
        c, h, w = layer.in_shape
        return (c, h // layer.kernel, w // layer.kernel)
    return tuple(layer.out_shape)


def validate_model(model, where="model"):
    """Check every rule of the contract on an in-memory model.

    Parameters
    ----------
    model : Model
    where : str
        Name used at the head of error messages (usually the ``model.json`` path).

    Raises
    ------
    ModelError
        On the first broken rule, naming the field.
    """
    inp = model.input
    if model.readout not in READOUTS:
        raise ModelError(f"{where}: readout: unknown readout {model.readout!r}, "
                         f"expected one of {', '.join(READOUTS)}")
    _validate_input(inp, where)
    if not model.layers:
        raise ModelError(f"{where}: layers: the network has no layers")
    names = set()
    prev_shape = tuple(inp.shape)
    for i, layer in enumerate(model.layers):
        at = f"{where}: layers[{i}]"
        if not isinstance(layer.name, str) or not layer.name.isidentifier():
            raise ModelError(f"{at}.name: {layer.name!r} is not a valid identifier")
        if layer.name in names:
            raise ModelError(f"{at}.name: duplicate layer name {layer.name!r}")
        names.add(layer.name)
        at = f"{where}: layers[{i}] ({layer.name})"
        for key in ("in_shape", "out_shape"):
            _check_tensor_size(getattr(layer, key), f"{at}.{key}")
        _validate_layer(layer, at, model.count_clip_of(i))
        # chaining: a flatten before a linear layer is implicit
        if layer.type == "linear":
            if layer.n_in != int(np.prod(prev_shape)):
                raise ModelError(f"{at}.in_shape: {list(layer.in_shape)} does not chain: the "
                                 f"previous output {list(prev_shape)} has "
                                 f"{int(np.prod(prev_shape))} values")
        elif tuple(layer.in_shape) != tuple(prev_shape):
            raise ModelError(f"{at}.in_shape: {list(layer.in_shape)} does not chain with the "
                             f"previous output {list(prev_shape)}")
        prev_shape = tuple(layer.out_shape)
    return model


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


def _validate_layer(layer, at, count_clip):
    if layer.type not in LAYER_TYPES:
        raise ModelError(f"{at}.type: unknown layer type {layer.type!r}, expected one of "
                         f"{', '.join(LAYER_TYPES)}")
    if layer.reset not in RESETS:
        raise ModelError(f"{at}.reset: unknown reset mode {layer.reset!r}, expected one of "
                         f"{', '.join(RESETS)}")
    spatial = layer.type in ("conv2d", "sumpool2d")
    want_dims = 3 if spatial else 1
    for key in ("in_shape", "out_shape"):
        shape = getattr(layer, key)
        if len(shape) != want_dims or not all(_is_int(s) and s > 0 for s in shape):
            raise ModelError(f"{at}.{key}: expected {want_dims} positive integers for "
                             f"{layer.type}, got {list(shape)}")
    # geometry
    if spatial:
        for key in ("kernel", "stride", "padding"):
            if not _is_int(getattr(layer, key)):
                raise ModelError(f"{at}.{key}: expected an integer for {layer.type}, "
                                 f"got {getattr(layer, key)!r}")
        if layer.kernel < 1 or layer.stride < 1 or layer.padding < 0:
            raise ModelError(f"{at}: kernel {layer.kernel}, stride {layer.stride}, padding "
                             f"{layer.padding}: need kernel >= 1, stride >= 1, padding >= 0")
        if layer.padding >= layer.kernel:
            raise ModelError(f"{at}.padding: {layer.padding} must be smaller than the kernel "
                             f"{layer.kernel}")
        if layer.type == "sumpool2d" and (layer.stride != layer.kernel or layer.padding != 0):
            raise ModelError(f"{at}: sumpool2d needs stride == kernel and padding 0, got "
                             f"kernel {layer.kernel}, stride {layer.stride}, padding {layer.padding}")
        if layer.type == "sumpool2d" and layer.out_shape[0] != layer.in_shape[0]:
            raise ModelError(f"{at}.out_shape: sumpool2d keeps the channels: "
                             f"{layer.out_shape[0]} != {layer.in_shape[0]}")
    else:
        for key in ("kernel", "stride", "padding"):
            if getattr(layer, key) is not None:
                raise ModelError(f"{at}.{key}: must be null for a linear layer")
    # widths
    if not _is_int(layer.state_bits) or not 2 <= layer.state_bits <= MAX_STATE_BITS:
        raise ModelError(f"{at}.state_bits: {layer.state_bits!r} is outside 2..{MAX_STATE_BITS}")
    if not _is_int(layer.acc_bits) or not 2 <= layer.acc_bits <= MAX_ACC_BITS:
        raise ModelError(f"{at}.acc_bits: {layer.acc_bits!r} is outside 2..{MAX_ACC_BITS}")
    if layer.type == "sumpool2d":
        if layer.weights is not None or layer.bias is not None:
            raise ModelError(f"{at}.weights: a sumpool2d layer has null weights and bias")
        if layer.weight_bits is not None and not _is_int(layer.weight_bits):
            raise ModelError(f"{at}.weight_bits: expected an integer or null")
    else:
        if not _is_int(layer.weight_bits) or not 2 <= layer.weight_bits <= MAX_WEIGHT_BITS:
            raise ModelError(f"{at}.weight_bits: {layer.weight_bits!r} is outside "
                             f"2..{MAX_WEIGHT_BITS}")
        if layer.weights is None:
            raise ModelError(f"{at}.weights: a {layer.type} layer needs weights")
        w = layer.weights
        if not isinstance(w, np.ndarray) or not np.issubdtype(w.dtype, np.integer):
            raise ModelError(f"{at}.weights: expected an integer array, got dtype "
                             f"{getattr(w, 'dtype', type(w).__name__)}")
        if layer.type == "conv2d":
            want = (layer.out_shape[0], layer.in_shape[0], layer.kernel, layer.kernel)
        else:
            want = (layer.out_shape[0], layer.in_shape[0])
        if tuple(w.shape) != want:
            raise ModelError(f"{at}.weights: shape {tuple(w.shape)} does not match "
                             f"{tuple(want)} from in_shape/out_shape/kernel")
        lim = (1 << (layer.weight_bits - 1)) - 1
        # min/max in the array's own dtype: a cast to int64 could wrap (uint64, int64 min)
        if w.size and (int(w.min()) < -lim or int(w.max()) > lim):
            bad = int(w.min()) if int(w.min()) < -lim else int(w.max())
            raise ModelError(f"{at}.weights: value {bad} is outside the {layer.weight_bits}-bit "
                             f"symmetric range -{lim}..{lim}")
    if layer.bias is not None:
        b = layer.bias
        if not isinstance(b, np.ndarray) or not np.issubdtype(b.dtype, np.integer):
            raise ModelError(f"{at}.bias: expected an integer array")
        if tuple(b.shape) != (layer.out_shape[0],):
            raise ModelError(f"{at}.bias: shape {tuple(b.shape)} does not match "
                             f"({layer.out_shape[0]},)")
        if b.size and (int(b.min()) < layer.state_min or int(b.max()) > layer.state_max):
            raise ModelError(f"{at}.bias: values must fit the {layer.state_bits}-bit state, "
                             f"got {int(b.min())}..{int(b.max())}")
    # leak
    if not _is_int(layer.beta_frac_bits) or not 0 <= layer.beta_frac_bits <= MAX_FRAC_BITS:
        raise ModelError(f"{at}.beta.frac_bits: {layer.beta_frac_bits!r} is outside "
                         f"0..{MAX_FRAC_BITS}")
    if not _is_int(layer.beta_num) or not 0 <= layer.beta_num <= (1 << layer.beta_frac_bits):
        raise ModelError(f"{at}.beta.num: {layer.beta_num!r} is outside "
                         f"0..2**frac_bits = {1 << layer.beta_frac_bits}")
    # threshold
    thr = layer.threshold
    if not isinstance(thr, np.ndarray) or thr.ndim != 1 or thr.shape[0] != layer.out_shape[0]:
        raise ModelError(f"{at}.threshold: expected one value or one per output channel "
                         f"({layer.out_shape[0]})")
    if thr.size and (thr.min() < 1 or thr.max() > layer.state_max):
        raise ModelError(f"{at}.threshold: values must be positive and fit the "
                         f"{layer.state_bits}-bit state (1..{layer.state_max}), got "
                         f"{int(thr.min())}..{int(thr.max())}")
    # shapes
    if spatial and tuple(layer.out_shape) != _expected_out_shape(layer):
        raise ModelError(f"{at}.out_shape: {list(layer.out_shape)} does not match "
                         f"{list(_expected_out_shape(layer))} computed from in_shape, kernel, "
                         f"stride and padding")
    if spatial and min(layer.out_shape[1:]) < 1:
        raise ModelError(f"{at}.out_shape: the kernel does not fit the input")
    # exact accumulation
    need = layer.required_acc_bits(count_clip)
    if layer.acc_bits < need:
        raise ModelError(f"{at}.acc_bits: {layer.acc_bits} is too small, the worst case needs "
                         f"{need}")
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
        raise ModelError(f"{where}: version: this tool reads version "
                         f"{' or '.join(str(v) for v in VERSIONS)} (an integer), got "
                         f"{version!r}")


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
    layers = []
    for i, ld in enumerate(doc["layers"]):
        at = f"{w}: layers[{i}]"
        _check_keys(ld, _LAYER_KEYS, _LAYER_OPTIONAL, at)
        _check_keys(ld["beta"], _BETA_KEYS, set(), f"{at}.beta")
        weights = None if ld["weights"] is None else _load_array(root, ld["weights"], f"{at}.weights")
        bias = None if ld["bias"] is None else _load_array(root, ld["bias"], f"{at}.bias")
        thr = ld["threshold"]
        per_channel = isinstance(thr, list)
        out_shape = _int_list(ld["out_shape"], f"{at}.out_shape")
        if not all(d > 0 for d in out_shape):
            raise ModelError(f"{at}.out_shape: expected positive integers, "
                             f"got {list(out_shape)}")
        _check_tensor_size(out_shape, f"{at}.out_shape")      # before np.full below
        if (per_channel and any(_is_int(t) and abs(t) > 1 << 62 for t in thr)) or \
                (_is_int(thr) and abs(thr) > 1 << 62):
            # only a guard of the int64 conversion below; validate_model checks the
            # layer's state range
            raise ModelError(f"{at}.threshold: {thr!r} is too large: thresholds are "
                             f"stored as int64 and must lie within -2**62..2**62")
        if per_channel:
            thr_arr = np.array(_int_list(thr, f"{at}.threshold"), dtype=np.int64)
        elif _is_int(thr):
            thr_arr = np.full(out_shape[0] if out_shape else 1, int(thr), dtype=np.int64)
        else:
            raise ModelError(f"{at}.threshold: expected an integer or a list of integers, "
                             f"got {thr!r}")
        scale = ld.get("scale")
        if scale is not None and not isinstance(scale, (int, float)):
            raise ModelError(f"{at}.scale: expected a number or null, got {scale!r}")
        for key in ("name", "type", "reset"):
            if not isinstance(ld[key], str):
                raise ModelError(f"{at}.{key}: expected a string, got {ld[key]!r}")
        layers.append(Layer(
            name=ld["name"], type=ld["type"],
            in_shape=_int_list(ld["in_shape"], f"{at}.in_shape"), out_shape=out_shape,
            kernel=_opt_int(ld["kernel"], f"{at}.kernel"),
            stride=_opt_int(ld["stride"], f"{at}.stride"),
            padding=_opt_int(ld["padding"], f"{at}.padding"),
            weights=weights, bias=bias,
            weight_bits=_opt_int(ld["weight_bits"], f"{at}.weight_bits"),
            state_bits=ld["state_bits"], acc_bits=ld["acc_bits"],
            beta_num=ld["beta"]["num"], beta_frac_bits=ld["beta"]["frac_bits"],
            threshold=thr_arr, threshold_per_channel=per_channel, reset=ld["reset"],
            scale=None if scale is None else float(scale)))
    roms = doc.get("roms")
    if roms is not None and not isinstance(roms, list):
        raise ModelError(f"{w}: roms: expected a list")
    meta = doc.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ModelError(f"{w}: meta: expected an object")
    model = Model(input=spec, layers=layers, readout=doc["readout"], roms=roms, meta=meta,
                  path=root)
    return validate_model(model, w)


# -- ROM images -------------------------------------------------------------------------

def rom_words(layer):
    """The canonical ROM image of a layer: one word per input address.

    For ``conv2d`` the address is ``(c_in * K + ky) * K + kx``; for ``linear`` it is
    the input index. Each word packs the weights of all output channels for that
    address, output 0 in the least significant bits, each ``weight_bits`` wide in two's
    complement. The hardware may re-pack these per lane; this is the exchange layout.

    Returns
    -------
    words : list of int
    width : int
        Word width in bits.
    """
    wb = layer.weight_bits
    w = layer.weights.astype(np.int64)
    cols = w.reshape(w.shape[0], -1).T if layer.type == "conv2d" else w.T   # (addr, C_out)
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


def model_to_json(model, root):
    """Write the arrays of ``model`` into ``root`` and return the ``model.json`` document."""
    layers = []
    roms = []
    for layer in model.layers:
        thr = [int(t) for t in layer.threshold]
        thr_json = thr if (layer.threshold_per_channel or len(set(thr)) > 1) else thr[0]
        ld = {
            "name": layer.name, "type": layer.type,
            "in_shape": [int(s) for s in layer.in_shape],
            "out_shape": [int(s) for s in layer.out_shape],
            "kernel": layer.kernel, "stride": layer.stride, "padding": layer.padding,
            "weights": None, "bias": None,
            "weight_bits": layer.weight_bits, "state_bits": layer.state_bits,
            "acc_bits": layer.acc_bits,
            "beta": {"num": layer.beta_num, "frac_bits": layer.beta_frac_bits},
            "threshold": thr_json, "reset": layer.reset,
        }
        if layer.scale is not None:
            ld["scale"] = float(layer.scale)
        if layer.weights is not None:
            ld["weights"] = _save_array(root, f"{layer.name}.weights.npy", layer.weights)
            words, width = rom_words(layer)
            rom_name = f"{layer.name}.weights.hex"
            write_readmemh(root / rom_name, words, width)
            roms.append({"file": rom_name, "sha256": _sha256(root / rom_name),
                         "layer": layer.name, "width": width, "depth": len(words),
                         "layout": ("addr = (c_in*K + ky)*K + kx" if layer.type == "conv2d"
                                    else "addr = input index") +
                                   "; output channel j in bits [j*wb, (j+1)*wb)"})
        if layer.bias is not None:
            ld["bias"] = _save_array(root, f"{layer.name}.bias.npy", layer.bias)
        layers.append(ld)
    doc = {
        "format": FORMAT, "version": VERSION,
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


def save_model(model, path, *, overwrite=True):
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
    """
    path = Path(path)
    validate_model(model, f"{path}/model.json")
    if path.exists() and not overwrite:
        raise ModelError(f"{path}: already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        doc = model_to_json(model, tmp)
        (tmp / "model.json").write_text(json.dumps(doc, indent=1) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model.path = path
    return path


def with_acc_bits(layer, count_clip=1):
    """A copy of ``layer`` with the smallest legal ``acc_bits``."""
    return replace(layer, acc_bits=layer.required_acc_bits(count_clip))
