"""The model directory: round trip, and a clear ModelError for every bad input.

Every bad-input case checks that the message is one line and names the file and the
field (or array file) at fault.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.model import (FORMAT, VERSION, ModelError, load_model, rom_words, save_model,
                       validate_model, with_acc_bits)
from sim.randmodel import random_layer, random_model
from sim.model import InputSpec, Model


def base_model():
    """conv2d (bias, per-channel threshold) -> sumpool2d -> linear (scalar threshold)."""
    rng = np.random.default_rng(1234)
    conv = random_layer(rng, "conv1", "conv2d", (2, 8, 8), count_clip=2, out_channels=3,
                        kernel=3, stride=2, padding=1, weight_bits=8, state_bits=16,
                        reset="subtract", leak=True, bias=True, per_channel=True)
    pool = random_layer(rng, "pool1", "sumpool2d", conv.out_shape, kernel=2, state_bits=12,
                        reset="zero", leak=False, per_channel=False)
    fc = random_layer(rng, "fc", "linear", pool.out_shape, n_out=5, weight_bits=6,
                      state_bits=16, reset="none", leak=True, bias=False, per_channel=False)
    return validate_model(Model(InputSpec((2, 8, 8), 1000, 4, 2), [conv, pool, fc],
                                "spike_count", meta={"made_by": "test"}))


def assert_same_model(a, b):
    assert a.input == b.input
    assert a.readout == b.readout
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        for key in ("name", "type", "kernel", "stride", "padding", "weight_bits",
                    "state_bits", "acc_bits", "beta_num", "beta_frac_bits", "reset",
                    "threshold_per_channel", "scale"):
            assert getattr(la, key) == getattr(lb, key), key
        assert tuple(la.in_shape) == tuple(lb.in_shape)
        assert tuple(la.out_shape) == tuple(lb.out_shape)
        for key in ("weights", "bias", "threshold"):
            x, y = getattr(la, key), getattr(lb, key)
            assert (x is None) == (y is None), key
            if x is not None:
                assert x.shape == y.shape and (x.astype(np.int64) == y.astype(np.int64)).all()


# -- round trip ------------------------------------------------------------------------------

def test_round_trip(tmp_path):
    model = base_model()
    model.layers[0].scale = 0.125
    path = save_model(model, tmp_path / "m")
    loaded = load_model(path)
    assert_same_model(model, loaded)
    assert loaded.meta == {"made_by": "test"}
    assert loaded.path == path
    # load through model.json as well
    assert_same_model(model, load_model(path / "model.json"))
    doc = json.loads((path / "model.json").read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert isinstance(doc["layers"][0]["threshold"], list)      # per channel stays a list
    assert isinstance(doc["layers"][2]["threshold"], int)       # scalar stays scalar
    assert doc["layers"][1]["synapses"][0]["weights"] is None
    assert doc["layers"][1]["bias"] is None
    # the ROM images are listed with checksums and hold the weights
    roms = {r["layer"]: r for r in doc["roms"]}
    assert set(roms) == {"conv1", "fc"}
    for layer in (model.layers[0], model.layers[2]):
        rom = roms[layer.name]
        lines = (path / rom["file"]).read_text().split()
        words, width = rom_words(layer)
        assert rom["width"] == width and rom["depth"] == len(words) == len(lines)
        assert [int(x, 16) for x in lines] == words
    # no temporary directories left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_rom_words_pack_twos_complement():
    """The exchange layout: output j in bits [j*wb, (j+1)*wb), two's complement."""
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "fc", "linear", (3,), n_out=2, weight_bits=4, bias=False)
    layer.weights = np.array([[1, -1, 7], [-7, 0, 3]])
    words, width = rom_words(layer)
    assert width == 8
    # address i holds (w[1][i] << 4) | w[0][i], each as a 4-bit two's complement nibble
    assert words == [0x91, 0x0F, 0x37]


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1))
def test_round_trip_random(tmp_path_factory, seed):
    model = random_model(np.random.default_rng(seed))
    path = save_model(model, tmp_path_factory.mktemp("rt") / "m")
    assert_same_model(model, load_model(path))


def test_save_overwrite(tmp_path):
    model = base_model()
    save_model(model, tmp_path / "m")
    with pytest.raises(ModelError, match="already exists"):
        save_model(model, tmp_path / "m", overwrite=False)
    model.readout = "membrane"
    save_model(model, tmp_path / "m")                            # replaces
    assert load_model(tmp_path / "m").readout == "membrane"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_invalid_writes_nothing(tmp_path):
    model = base_model()
    model.layers[0].acc_bits -= 1
    with pytest.raises(ModelError, match=r"acc_bits"):
        save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_acc_bits_exact_minimum_loads(tmp_path):
    model = base_model()
    model.layers = [with_acc_bits(layer, model.count_clip_of(i))
                    for i, layer in enumerate(model.layers)]
    # B for the first layer uses count_clip: one fewer bit must fail
    need = model.layers[0].required_acc_bits(2)
    assert model.layers[0].acc_bits == need
    assert model.layers[0].required_acc_bits(1) <= need
    path = save_model(model, tmp_path / "m")
    assert load_model(path).layers[0].acc_bits == need


def test_acc_bits_bound_from_the_contract():
    # hand computation of B for a tiny linear layer: fan-in |w| sums are 9 and 12,
    # count_clip 3, |bias| 5 and 0, state_bits 6: B = max(27 + 5, 36 + 0) + 32 = 68
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "fc", "linear", (3,), n_out=2, weight_bits=4, state_bits=6,
                         bias=True)
    layer.weights = np.array([[2, -3, 4], [-4, 4, -4]])
    layer.bias = np.array([-5, 0])
    assert layer.worst_case_bound(3) == 68
    assert layer.required_acc_bits(3) == 8           # 68 needs 7 bits, plus the sign


# -- bad inputs --------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """The base model as a version-1 directory (the v1 reader's cases)."""
    path = save_model(base_model(), tmp_path / "m", version=1)
    assert _doc(path)["version"] == 1
    return path


def _doc(path):
    return json.loads((path / "model.json").read_text())


def _write(path, doc):
    (path / "model.json").write_text(json.dumps(doc))


def _rewrite_array(path, doc, layer, key, arr):
    """Replace an array file and update its checksum, so only the content is wrong."""
    import hashlib
    name = doc["layers"][layer][key]["file"]
    np.save(path / name, arr)
    doc["layers"][layer][key]["sha256"] = hashlib.sha256((path / name).read_bytes()).hexdigest()


def _expect(path, *fragments):
    with pytest.raises(ModelError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def mutate(doc, path):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return mutate


def _del(*keys):
    def mutate(doc, path):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return mutate


def _weights(fn):
    """Rewrite conv1's weights with ``fn(weights)`` (checksum kept consistent)."""
    def mutate(doc, path):
        w = np.load(path / doc["layers"][0]["weights"]["file"])
        _rewrite_array(path, doc, 0, "weights", fn(w))
    return mutate


def _fc_weights(fn):
    def mutate(doc, path):
        w = np.load(path / doc["layers"][2]["weights"]["file"])
        _rewrite_array(path, doc, 2, "weights", fn(w))
    return mutate


def _bias(fn):
    def mutate(doc, path):
        b = np.load(path / doc["layers"][0]["bias"]["file"])
        _rewrite_array(path, doc, 0, "bias", fn(b))
    return mutate


def _acc_minus_one(doc, path):
    need = base_model().layers[0].required_acc_bits(2)
    doc["layers"][0]["acc_bits"] = need - 1


def _chain(doc, path):
    # pool1 is consistent in itself (6x4 -> 3x2) but conv1 gives 3x4x4
    doc["layers"][1]["in_shape"] = [3, 6, 4]
    doc["layers"][1]["out_shape"] = [3, 3, 2]


def _linear_chain(doc, path):
    # a consistent linear layer (weights match in_shape) on the wrong number of inputs
    doc["layers"][2]["in_shape"] = [47]
    _rewrite_array(path, doc, 2, "weights", np.zeros((5, 47), dtype=np.int8))


def _big(doc, path):
    doc["layers"][0]["threshold"] = [10**30, 1, 1]


L0 = "layers[0]"
L1 = "layers[1]"
L2 = "layers[2]"

BAD = {
    # JSON and keys
    "unknown top key": (_set("extra", 1), ["unknown key 'extra'"]),
    "unknown input key": (_set("input", "fps", 3), ["input", "unknown key 'fps'"]),
    "unknown layer key": (_set("layers", 1, "groups", 1), [L1, "unknown key 'groups'"]),
    "unknown beta key": (_set("layers", 0, "beta", "shift", 1), [L0 + ".beta", "'shift'"]),
    "unknown array key": (_set("layers", 0, "weights", "dtype", "i8"), [L0 + ".weights",
                                                                        "'dtype'"]),
    "missing top key": (_del("readout"), ["missing key 'readout'"]),
    "missing input key": (_del("input", "dt_us"), ["input", "missing key 'dt_us'"]),
    "missing layer key": (_del("layers", 2, "reset"), [L2, "missing key 'reset'"]),
    "missing beta key": (_del("layers", 0, "beta", "num"), [L0 + ".beta", "'num'"]),
    "missing sha256": (_del("layers", 0, "weights", "sha256"), [L0 + ".weights", "'sha256'"]),
    "empty object": (lambda d, p: d.clear(), ["missing key"]),
    "format": (_set("format", "onnx"), ["format", "'onnx'"]),
    "version": (_set("version", 3), ["version", "3"]),
    "readout": (_set("readout", "rate"), ["readout", "'rate'"]),
    "layers not a list": (_set("layers", {}), ["layers"]),
    "no layers": (_set("layers", []), ["layers", "no layers"]),
    "roms not a list": (_set("roms", {}), ["roms"]),
    "meta not an object": (_set("meta", [1]), ["meta"]),
    # input section
    "input shape length": (_set("input", "shape", [2, 8]), ["input.shape"]),
    "input shape zero": (_set("input", "shape", [2, 0, 8]), ["input.shape"]),
    "timesteps zero": (_set("input", "timesteps", 0), ["input.timesteps"]),
    "count_clip zero": (_set("input", "count_clip", 0), ["input.count_clip"]),
    "dt_us float": (_set("input", "dt_us", 1000.5), ["input.dt_us"]),
    "dt_us bool": (_set("input", "dt_us", True), ["input.dt_us"]),
    # layer fields
    "unknown layer type": (_set("layers", 0, "type", "conv3d"), [L0, ".type", "'conv3d'"]),
    "unknown reset": (_set("layers", 1, "reset", "hard"), [L1, ".reset", "'hard'"]),
    "type not a string": (_set("layers", 0, "type", 3), [L0, ".type"]),
    "bad name": (_set("layers", 0, "name", "conv 1"), [L0, ".name"]),
    "duplicate name": (_set("layers", 2, "name", "conv1"), [L2, "duplicate", "conv1"]),
    "shapes don't chain": (_chain, [L1, "in_shape", "does not chain"]),
    "linear doesn't chain": (_linear_chain, [L2, "in_shape", "chain", "12"]),
    "out_shape wrong": (_set("layers", 0, "out_shape", [3, 5, 4]), [L0, "out_shape"]),
    "in_shape not a list": (_set("layers", 0, "in_shape", "2x8x8"), [L0 + ".in_shape"]),
    "padding >= kernel": (_set("layers", 0, "padding", 3), [L0, "padding", "smaller"]),
    "negative padding": (_set("layers", 0, "padding", -1), [L0, "padding"]),
    "zero stride": (_set("layers", 0, "stride", 0), [L0, "stride"]),
    "kernel float": (_set("layers", 0, "kernel", 3.0), [L0 + ".kernel"]),
    "kernel null on conv": (_set("layers", 0, "kernel", None), [L0, ".kernel"]),
    "linear with kernel": (_set("layers", 2, "kernel", 1), [L2, ".kernel", "null"]),
    "pool stride != kernel": (_set("layers", 1, "stride", 1), [L1, "sumpool2d"]),
    "pool with weights": (lambda d, p: d["layers"][1].update(weights=d["layers"][0]["weights"]),
                          [L1, ".weights"]),
    "linear without weights": (_set("layers", 2, "weights", None), [L2, ".weights"]),
    "threshold zero": (_set("layers", 2, "threshold", 0), [L2, ".threshold"]),
    "threshold negative": (_set("layers", 0, "threshold", [4, -1, 4]), [L0, ".threshold"]),
    "threshold float": (_set("layers", 2, "threshold", 8.5), [L2, ".threshold"]),
    "threshold too many": (_set("layers", 0, "threshold", [4, 4, 4, 4]), [L0, ".threshold"]),
    "threshold above state": (_set("layers", 1, "threshold", 2048), [L1, ".threshold"]),
    "threshold huge": (_big, [L0, ".threshold"]),
    "weight_bits 17": (_set("layers", 0, "weight_bits", 17), [L0, ".weight_bits"]),
    "weight_bits 1": (_set("layers", 0, "weight_bits", 1), [L0, ".weight_bits"]),
    "state_bits 1": (_set("layers", 0, "state_bits", 1), [L0, ".state_bits"]),
    "state_bits 33": (_set("layers", 0, "state_bits", 33), [L0, ".state_bits"]),
    "acc_bits too small": (_acc_minus_one, [L0, ".acc_bits", "too small"]),
    "acc_bits too large": (_set("layers", 0, "acc_bits", 63), [L0, ".acc_bits"]),
    "beta num > 2**frac": (_set("layers", 0, "beta", {"num": 5, "frac_bits": 2}),
                           [L0, ".beta.num"]),
    "beta num negative": (_set("layers", 0, "beta", {"num": -1, "frac_bits": 2}),
                          [L0, ".beta.num"]),
    "beta frac negative": (_set("layers", 0, "beta", {"num": 0, "frac_bits": -1}),
                           [L0, ".beta.frac_bits"]),
    "beta not an object": (_set("layers", 0, "beta", 0.5), [L0 + ".beta"]),
    "scale string": (_set("layers", 0, "scale", "big"), [L0 + ".scale"]),
    # array references
    "array path escapes": (_set("layers", 0, "weights", "file", "../x.npy"),
                           [L0 + ".weights.file"]),
    "array file not a string": (_set("layers", 0, "weights", "file", 5), [L0 + ".weights.file"]),
}

# array contents (checksums kept consistent, so the content check is what fails)
BAD_ARRAYS = {
    "wrong weights shape": (_weights(lambda w: w[:, :, :2, :2]), [],
                            [L0, ".weights", "shape"]),
    "float weights": (_weights(lambda w: w.astype(np.float32)), ["conv1.weights.npy", "dtype"],
                      []),
    "weight outside width": (_weights(lambda w: np.where(w == w.max(), 128, w)), [],
                             [L0, ".weights", "128"]),
    "weight -2**(wb-1)": (_weights(lambda w: np.where(w == w.min(), -128, w)), [],
                          [L0, ".weights", "-128"]),
    "uint64 weight wraps": (_fc_weights(lambda w: np.full(w.shape, 2**64 - 1, np.uint64)), [],
                            [L2, ".weights", str(2**64 - 1)]),
    "int64 min weight": (_fc_weights(lambda w: np.full(w.shape, -2**63, np.int64)), [],
                         [L2, ".weights", str(-2**63)]),
    "bias shape": (_bias(lambda b: b[:2]), [], [L0, ".bias", "shape"]),
    "bias outside state": (_bias(lambda b: np.full_like(b, 40000, dtype=np.int64)), [],
                           [L0, ".bias"]),
    "uint64 bias wraps": (_bias(lambda b: np.full(b.shape, 2**64 - 2, np.uint64)), [],
                          [L0, ".bias"]),
    "bool weights": (_weights(lambda w: w > 0), ["conv1.weights.npy", "dtype"], []),
    "object weights": (_weights(lambda w: w.astype(object)), ["conv1.weights.npy"], []),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_json(saved, case):
    mutate, fragments = BAD[case]
    doc = _doc(saved)
    mutate(doc, saved)
    _write(saved, doc)
    _expect(saved, str(saved / "model.json"), *fragments)


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_array_content(saved, case):
    mutate, in_file, in_json = BAD_ARRAYS[case]
    doc = _doc(saved)
    mutate(doc, saved)
    _write(saved, doc)
    # the message names the array file, or model.json and the field
    head = str(saved / "model.json") if in_json else str(saved)
    _expect(saved, head, *in_file, *in_json)


def test_malformed_json(saved):
    (saved / "model.json").write_text('{"format": "snn-fixed-point", ')
    _expect(saved, str(saved / "model.json"), "malformed JSON")


def test_not_utf8(saved):
    (saved / "model.json").write_bytes(b"\xff\xfe{}")
    _expect(saved, str(saved / "model.json"))


def test_top_level_not_an_object(saved):
    (saved / "model.json").write_text("[1, 2]")
    _expect(saved, str(saved / "model.json"), "expected an object")


def test_missing_array_file(saved):
    os.remove(saved / "fc.weights.npy")
    _expect(saved, str(saved / "fc.weights.npy"), "missing", "layers[2].weights")


def test_sha256_mismatch(saved):
    w = np.load(saved / "conv1.weights.npy")
    np.save(saved / "conv1.weights.npy", w[::-1].copy())      # same shape, other bytes
    _expect(saved, str(saved / "conv1.weights.npy"), "sha256")


def test_sha256_null(saved):
    doc = _doc(saved)
    doc["layers"][0]["weights"]["sha256"] = None
    _write(saved, doc)
    _expect(saved, str(saved / "conv1.weights.npy"), "sha256")


def test_array_not_npy(saved):
    doc = _doc(saved)
    (saved / "conv1.weights.npy").write_bytes(b"not an array")
    import hashlib
    doc["layers"][0]["weights"]["sha256"] = hashlib.sha256(b"not an array").hexdigest()
    _write(saved, doc)
    _expect(saved, str(saved / "conv1.weights.npy"), ".npy")


def test_missing_directory_and_json(tmp_path):
    _expect(tmp_path / "nowhere", str(tmp_path / "nowhere"), "not found")
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty", str(tmp_path / "empty" / "model.json"), "missing")


def test_membrane_and_optional_keys_load(saved):
    """The positive counterpart: what the contract allows does load."""
    doc = _doc(saved)
    doc["readout"] = "membrane"
    doc["meta"] = {"command": "python -m quant.export ...", "accuracy": 0.9}
    doc["layers"][2]["threshold"] = [1, 2, 3, 4, 5]
    doc["layers"][0]["scale"] = 3
    _write(saved, doc)
    model = load_model(saved)
    assert model.readout == "membrane"
    assert model.layers[2].threshold.tolist() == [1, 2, 3, 4, 5]
    assert model.layers[2].threshold_per_channel
    assert model.layers[0].scale == 3.0


def test_any_integer_dtype_loads(saved):
    doc = _doc(saved)
    w = np.load(saved / "conv1.weights.npy")
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        _rewrite_array(saved, doc, 0, "weights", w.astype(dtype))
        _write(saved, doc)
        assert (load_model(saved).layers[0].weights == w).all()
    pos = np.abs(w)
    _rewrite_array(saved, doc, 0, "weights", pos.astype(np.uint16))
    _write(saved, doc)
    assert (load_model(saved).layers[0].weights == pos).all()


# -- every field, every odd value: a ModelError or a valid model, never a crash ----------------

ODD_VALUES = [None, True, -1, 0, 1, 3, 2**70, -2**70, 1.5, float("nan"), "x", [], {}, [1, 2, 3],
              [2**70], {"file": "x.npy"}]


def _leaves(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _leaves(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _leaves(v, prefix + (i,))


def test_every_field_rejects_odd_values_cleanly(saved):
    """Replace (or delete) each field of model.json in turn: load_model either returns a
    valid model or raises ModelError naming model.json or an array file."""
    original = (saved / "model.json").read_text()
    base = json.loads(original)
    paths = [p for p in _leaves(base) if "roms" not in p and "meta" not in p]
    assert len(paths) > 60
    for path in paths:
        for value in ODD_VALUES + ["<delete>"]:
            doc = json.loads(original)
            obj = doc
            for k in path[:-1]:
                obj = obj[k]
            if value == "<delete>":
                if isinstance(obj, list):
                    obj.pop(path[-1])
                else:
                    del obj[path[-1]]
            else:
                obj[path[-1]] = value
            (saved / "model.json").write_text(json.dumps(doc))
            try:
                model = load_model(saved)
            except ModelError as e:
                msg = str(e)
                assert "\n" not in msg and msg.startswith(str(saved)), (path, value, msg)
            else:
                validate_model(model)


# -- version 2 ----------------------------------------------------------------------------------

def base_graph():
    """A v2 graph with every v2 feature the loader checks:

    c1: conv2d from the input (3x3 s2 p1), spike_limit 2, plus identity from c2 (delay 1,
        backward recurrence);
    c2: conv2d from c1 + identity from c1 (residual) + identity from itself (delay 1),
        v_min, current-based;
    fc: linear from c2 (delay 1, 2 taps) + linear from the input (a fork of the input).
    """
    from sim.model import Current, Layer, Synapse
    rng = np.random.default_rng(77)

    def w(*shape, bits=5):
        lim = (1 << (bits - 1)) - 1
        return rng.integers(-lim, lim + 1, size=shape).astype(np.int16)

    def layer(name, out_shape, synapses, **kw):
        co = out_shape[0]
        return Layer(name=name, out_shape=out_shape, synapses=synapses,
                     bias=kw.pop("bias", None), state_bits=kw.pop("state_bits", 12), acc_bits=62,
                     beta_num=3, beta_frac_bits=2, threshold=np.full(co, 9, dtype=np.int64),
                     reset=kw.pop("reset", "subtract"), **kw)

    c1 = layer("c1", (3, 3, 3), [
        Synapse("input", "conv2d", 3, 2, 1, w(3, 2, 3, 3), 5),
        Synapse("c2", "identity", weights=w(3), weight_bits=5, delay=1)], spike_limit=2)
    c2 = layer("c2", (3, 3, 3), [
        Synapse("c1", "conv2d", 3, 1, 1, w(3, 3, 3, 3), 5),
        Synapse("c1", "identity", weights=w(3), weight_bits=5),
        Synapse("c2", "identity", weights=w(3), weight_bits=5, delay=1)],
        v_min=-100, current=Current(1, 1, 8), bias=np.array([1, -2, 3], dtype=np.int16),
        reset="zero")
    fc = layer("fc", (4,), [
        Synapse("c2", "linear", weights=w(2, 4, 27), weight_bits=5, delay=1, taps=2),
        Synapse("input", "linear", weights=w(4, 72), weight_bits=5)], state_bits=16)
    model = Model(InputSpec((2, 6, 6), 1000, 4, 2), [c1, c2, fc], "spike_count")
    for i, lay in enumerate(model.layers):
        lay.acc_bits = model.required_acc_bits(i)
    return validate_model(model)


def _c2_acc_bits():
    """The contract's bound for c2, written out from the arrays (independent of sim.model):
    m_src is c1's spike_limit (2) for both synapses from c1 and c2's own (1)."""
    c1, c2 = base_graph().layers[:2]
    conv, ident, rec = c2.synapses
    per_channel = [2 * int(np.abs(conv.weights[co].astype(np.int64)).sum())
                   + 2 * abs(int(ident.weights[co])) + abs(int(rec.weights[co]))
                   + abs(int(c2.bias[co])) for co in range(3)]
    return (max(per_channel) + 2**11 + 2**7).bit_length() + 1


def test_v2_round_trip_and_default_version(tmp_path):
    model = base_graph()
    path = save_model(model, tmp_path / "g")
    doc = _doc(path)
    assert doc["version"] == VERSION == 2
    assert [len(ld["synapses"]) for ld in doc["layers"]] == [2, 3, 2]
    assert doc["layers"][1]["current"] == {"beta": {"num": 1, "frac_bits": 1}, "state_bits": 8}
    assert doc["layers"][2]["synapses"][0]["taps"] == 2
    loaded = load_model(path)
    assert loaded.version == 2
    for la, lb in zip(model.layers, loaded.layers):
        for key in ("name", "out_shape", "state_bits", "acc_bits", "spike_limit", "v_min",
                    "current", "reset"):
            assert getattr(la, key) == getattr(lb, key), key
        for sa, sb in zip(la.synapses, lb.synapses):
            for key in ("source", "type", "kernel", "stride", "padding", "weight_bits",
                        "delay", "taps", "in_shape"):
                assert getattr(sa, key) == getattr(sb, key), key
            assert (sa.weights == sb.weights).all()
    assert loaded.layers[1].acc_bits == _c2_acc_bits()
    # a v1 model read and saved again is a v2 directory with the same meaning
    v1 = save_model(base_model(), tmp_path / "v1", version=1)
    again = save_model(load_model(v1), tmp_path / "v1as2")
    assert _doc(again)["version"] == 2
    assert_same_model(load_model(v1), load_model(again))
    # a graph cannot be written as version 1
    with pytest.raises(ModelError, match="version 1 holds chains only: layer 'c1' has 2"):
        save_model(model, tmp_path / "no", version=1)
    assert not (tmp_path / "no").exists()


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1))
def test_v2_round_trip_random(tmp_path_factory, seed):
    from sim.randmodel import random_graph
    model = random_graph(np.random.default_rng(seed))
    loaded = load_model(save_model(model, tmp_path_factory.mktemp("g") / "m"))
    assert [lay.name for lay in loaded.layers] == [lay.name for lay in model.layers]
    for la, lb in zip(model.layers, loaded.layers):
        assert la.acc_bits == lb.acc_bits and la.current == lb.current
        assert [(s.source, s.type, s.delay, s.taps) for s in la.synapses] == \
            [(s.source, s.type, s.delay, s.taps) for s in lb.synapses]


@pytest.fixture
def saved2(tmp_path):
    return save_model(base_graph(), tmp_path / "g")


def _syn(layer, j, key, value):
    return _set("layers", layer, "synapses", j, key, value)


def _acc_c2(doc, path):
    doc["layers"][1]["acc_bits"] = _c2_acc_bits() - 1


def _taps_mismatch(doc, path):
    doc["layers"][2]["synapses"][0]["taps"] = 3


S = "layers[{}] ({}).synapses[{}]"
BAD_V2 = {
    "zero-delay cycle": (_syn(0, 1, "delay", 0),
                         [S.format(0, "c1", 1) + ".delay", "zero-delay cycle c1 -> c2 -> c1"]),
    "zero-delay self": (_syn(1, 2, "delay", 0),
                        [S.format(1, "c2", 2) + ".delay", "from itself", "c2 -> c2"]),
    "zero-delay later, no cycle": (_syn(0, 1, "delay", 0),
                                   [S.format(0, "c1", 1) + ".delay", "later layer 'c2'"]),
    "unknown source": (_syn(1, 0, "source", "nope"),
                       [S.format(1, "c2", 0) + ".source", "'nope'"]),
    "source not a string": (_syn(1, 0, "source", 3), ["layers[1].synapses[0].source"]),
    "geometry mismatch": (_syn(1, 0, "stride", 2),
                          [S.format(1, "c2", 0), "[3, 2, 2]", "out_shape [3, 3, 3]"]),
    "identity shape mismatch": (_syn(2, 1, "type", "identity"), [S.format(2, "fc", 1)]),
    "taps disagree with weights": (_taps_mismatch,
                                   [S.format(2, "fc", 0) + ".weights", "taps 3"]),
    "taps zero": (_syn(2, 0, "taps", 0), [S.format(2, "fc", 0) + ".taps"]),
    "delay negative": (_syn(2, 0, "delay", -1), [S.format(2, "fc", 0) + ".delay"]),
    "delay float": (_syn(2, 0, "delay", 1.0), [S.format(2, "fc", 0) + ".delay"]),
    "spike_limit 0": (_set("layers", 0, "spike_limit", 0), ["layers[0] (c1).spike_limit"]),
    "spike_limit bool": (_set("layers", 0, "spike_limit", True), ["(c1).spike_limit"]),
    "v_min positive": (_set("layers", 1, "v_min", 1), ["layers[1] (c2).v_min", "-2048..0"]),
    "v_min below the state": (_set("layers", 1, "v_min", -2049), ["(c2).v_min"]),
    "current without beta": (_del("layers", 1, "current", "beta"),
                             ["layers[1].current", "missing key 'beta'"]),
    "current state_bits 1": (_set("layers", 1, "current", "state_bits", 1),
                             ["(c2).current.state_bits"]),
    "current beta num": (_set("layers", 1, "current", "beta", "num", 3),
                         ["(c2).current.beta.num"]),
    "acc_bits too small": (_acc_c2, ["layers[1] (c2).acc_bits", "too small",
                                     f"needs {_c2_acc_bits()}"]),
    "unknown synapse key": (_syn(0, 0, "groups", 1), ["layers[0].synapses[0]", "'groups'"]),
    "missing synapse key": (_del("layers", 0, "synapses", 0, "weight_bits"),
                            ["layers[0].synapses[0]", "'weight_bits'"]),
    "v1 key in a v2 layer": (_set("layers", 0, "type", "conv2d"), ["layers[0]", "'type'"]),
    "synapses not a list": (_set("layers", 0, "synapses", {}), ["layers[0].synapses"]),
    "no synapses": (_set("layers", 0, "synapses", []), ["(c1).synapses", "at least one"]),
    "identity with a kernel": (_syn(0, 1, "kernel", 1), [S.format(0, "c1", 1) + ".kernel"]),
    "identity without weights": (_syn(0, 1, "weights", None),
                                 [S.format(0, "c1", 1) + ".weights"]),
    "unknown kind": (_syn(0, 0, "type", "conv3d"), [S.format(0, "c1", 0) + ".type",
                                                    "'conv3d'"]),
    "layer named input": (_set("layers", 2, "name", "input"), ["layers[2].name", "'input'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_V2))
def test_bad_v2_model_json(saved2, case):
    mutate, fragments = BAD_V2[case]
    doc = _doc(saved2)
    if case == "zero-delay later, no cycle":
        # c2 no longer reads c1 at the same step: the edge back is named, not a cycle
        for j in (0, 1):
            doc["layers"][1]["synapses"][j]["delay"] = 1
    mutate(doc, saved2)
    _write(saved2, doc)
    msg = _expect(saved2, str(saved2 / "model.json"), *fragments)
    if case == "zero-delay later, no cycle":
        assert "cycle" not in msg and "edge c2 -> c1" in msg


def test_v2_every_field_rejects_odd_values_cleanly(saved2):
    test_every_field_rejects_odd_values_cleanly(saved2)
