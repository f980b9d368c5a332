"""Model directories written with plain ``json`` and ``numpy.save``, for oracle tests.

Independent of :mod:`sim.model` on purpose: the hand-worked v2 examples and the oracle's
self-consistency tests build their models here, so they depend neither on the project's
writer nor on its random graph generator.

Functions
---------
write_model(root, doc)
    Write ``model.json`` and one ``.npy`` per array of ``doc``.
layer(name, out_shape, synapses, **fields), synapse(source, kind, weights, **fields)
    A v2 layer / synapse entry with the contract's defaults filled in.
random_doc(rng, ...)
    A random valid v2 model document (graphs, delays, taps, recurrence, multi-spike,
    v_min, current-based layers).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["write_model", "model_doc", "layer", "synapse", "random_doc", "bound_acc_bits"]


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save(root, name, array):
    path = Path(root) / name
    np.save(path, np.asarray(array))
    return {"file": name, "sha256": _sha256(path)}


def write_model(root, doc):
    """Write ``doc`` as a model directory at ``root``.

    ``doc`` is a ``model.json`` document except that each ``weights`` and ``bias`` may
    be an array (or nested list): it is saved as ``.npy`` and replaced by its
    ``{"file", "sha256"}`` reference. ``doc`` itself is not changed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc = json.loads(json.dumps(doc, default=lambda a: {"__array__": np.asarray(a).tolist(),
                                                         "dtype": str(np.asarray(a).dtype)}))

    def ref(value, name):
        if isinstance(value, dict) and "__array__" in value:
            return _save(root, name, np.array(value["__array__"], dtype=value["dtype"]))
        if isinstance(value, list):
            return _save(root, name, np.array(value, dtype=np.int64))
        return value

    for ld in doc["layers"]:
        ld["bias"] = ref(ld["bias"], f"{ld['name']}.bias.npy")
        if "synapses" in ld:
            for j, sd in enumerate(ld["synapses"]):
                sd["weights"] = ref(sd["weights"], f"{ld['name']}.syn{j}.weights.npy")
        else:
            ld["weights"] = ref(ld["weights"], f"{ld['name']}.weights.npy")
    (root / "model.json").write_text(json.dumps(doc, indent=1))
    return root


def model_doc(input_shape, timesteps, layers, *, count_clip=1, readout="spike_count"):
    """A v2 ``model.json`` document."""
    return {"format": "snn-fixed-point", "version": 2,
            "input": {"shape": list(input_shape), "dt_us": 1000, "timesteps": timesteps,
                      "count_clip": count_clip},
            "readout": readout, "layers": list(layers)}


def synapse(source, kind, weights, *, kernel=None, stride=None, padding=None,
            weight_bits=8, delay=None, taps=None):
    """A v2 synapse entry; ``delay``/``taps`` are written only when given."""
    sd = {"source": source, "type": kind, "kernel": kernel, "stride": stride,
          "padding": padding, "weights": weights,
          "weight_bits": None if kind == "sumpool2d" else weight_bits}
    if delay is not None:
        sd["delay"] = delay
    if taps is not None:
        sd["taps"] = taps
    return sd


def layer(name, out_shape, synapses, *, threshold, state_bits, acc_bits, beta=(1, 0),
          reset="subtract", bias=None, spike_limit=None, v_min=None, current=None):
    """A v2 layer entry; ``current`` is ``(num, frac_bits, state_bits)`` or None."""
    ld = {"name": name, "out_shape": list(out_shape), "synapses": list(synapses),
          "bias": bias, "state_bits": state_bits, "acc_bits": acc_bits,
          "beta": {"num": beta[0], "frac_bits": beta[1]}, "threshold": threshold,
          "reset": reset}
    if spike_limit is not None:
        ld["spike_limit"] = spike_limit
    if v_min is not None:
        ld["v_min"] = v_min
    if current is not None:
        ld["current"] = {"beta": {"num": current[0], "frac_bits": current[1]},
                         "state_bits": current[2]}
    return ld


# -- random graphs -------------------------------------------------------------------------

def _abs_sum(weights):
    return int(np.abs(np.asarray(weights, dtype=np.int64)).sum())


def bound_acc_bits(doc):
    """A safe ``acc_bits`` for every layer of ``doc`` (a coarse upper bound of the
    contract's ``B``: every weight of every synapse counted for every neuron)."""
    limits = {"input": doc["input"]["count_clip"]}
    for ld in doc["layers"]:
        limits[ld["name"]] = ld.get("spike_limit", 1)
    for ld in doc["layers"]:
        b = 0
        for sd in ld["synapses"]:
            if sd["type"] == "sumpool2d":
                k = sd["kernel"]
                b += limits[sd["source"]] * k * k * sd.get("taps", 1)
            else:
                b += limits[sd["source"]] * _abs_sum(sd["weights"])
        if ld["bias"] is not None:
            b += _abs_sum(ld["bias"])
        b += 2 ** (ld["state_bits"] - 1)
        if ld.get("current") is not None:
            b += 2 ** (ld["current"]["state_bits"] - 1)
        ld["acc_bits"] = b.bit_length() + 1
    return doc


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def random_doc(rng, *, n_layers=None, timesteps=None, max_delay=2, max_taps=3,
               recurrence=True, multi_spike=True, v_min=True, current=True, delays=True,
               wide=False):
    """A random valid v2 model document (arrays as numpy arrays, see :func:`write_model`).

    Every layer has the shape of the input (so that every synapse kind fits) or, for a
    linear tail, ``(N,)``. With every feature switched off (``delays``, ``recurrence``,
    ``multi_spike``, ``v_min``, ``current`` all False) it is a graph of same-step edges
    from earlier layers only. ``wide`` draws the widths near the format's limits (state
    and current up to 32 bits, 16-bit weights, ``frac_bits`` up to 24, counts and spike
    limits in the hundreds); its ``acc_bits`` may then exceed 62 (check before use).
    """
    P, H, W = int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(2, 5))
    T = timesteps or int(rng.integers(1, 6))
    clip = int(rng.integers(1, 300 if wide else 4))
    n = n_layers or int(rng.integers(1, 5))
    shapes = {"input": (P, H, W)}
    names = []
    layers = []
    for i in range(n):
        name = f"l{i}"
        linear_tail = i == n - 1 and rng.random() < 0.4
        if linear_tail:
            out = (int(rng.integers(1, 5)),)
        else:
            out = (int(rng.integers(1, 3)), H, W)
        state_bits = int(rng.integers(16, 33) if wide else rng.integers(4, 12))
        wb = int(rng.integers(8, 17) if wide else rng.integers(2, 7))
        wmax = 2 ** (wb - 1) - 1
        synapses = []
        sources = ["input"] + names
        n_syn = int(rng.integers(1, 4))
        for _ in range(n_syn):
            recurrent = recurrence and rng.random() < 0.3
            if recurrent:
                source = names[int(rng.integers(0, len(names)))] if names and \
                    rng.random() < 0.3 else name     # self, or an earlier layer backwards
                # a backward edge: pick a later layer only once it exists, so self here
                delay = int(rng.integers(1, max_delay + 2))
            else:
                source = sources[int(rng.integers(0, len(sources)))]
                delay = int(rng.integers(0, max_delay + 1)) if delays else 0
            taps = int(rng.integers(1, max_taps + 1)) if delays and rng.random() < 0.4 else 1
            ins = shapes.get(source, out)
            kinds = []
            if len(out) == 1:
                kinds.append("linear")
                if len(ins) == 1 and ins == out:
                    kinds.append("identity")
            elif len(ins) == 3:
                kinds += ["conv2d", "conv2d"]
                if ins == out:
                    kinds.append("identity")
                if ins[0] == out[0] and ins[1:] == out[1:]:
                    kinds.append("sumpool2d")        # kernel 1
            if not kinds:
                continue
            kind = kinds[int(rng.integers(0, len(kinds)))]
            if kind == "conv2d":
                # an odd kernel with 'same' padding and stride 1 keeps H, W
                k = int(rng.choice([1, 3]))
                p = k // 2
                base = (out[0], ins[0], k, k)
                kw = dict(kernel=k, stride=1, padding=p)
            elif kind == "sumpool2d":
                base = None
                kw = dict(kernel=1, stride=1, padding=0)
            elif kind == "linear":
                base = (out[0], int(np.prod(ins)))
                kw = {}
            else:
                base = (ins[0],)
                kw = {}
            if base is None:
                weights = None
            else:
                weights = rng.integers(-wmax, wmax + 1, size=(taps, *base) if taps > 1 else base)
                dtypes = [np.int8, np.int16, np.int64] if wb <= 8 else [np.int16, np.int64]
                weights = weights.astype(dtypes[int(rng.integers(0, len(dtypes)))])
            synapses.append(synapse(source, kind, weights, weight_bits=wb,
                                    delay=delay if (delay or rng.random() < 0.5) else None,
                                    taps=taps if (taps > 1 or rng.random() < 0.3) else None,
                                    **kw))
        if not synapses:                         # always at least one forward edge
            source = "input" if len(out) == 3 or not names else names[-1]
            ins = shapes[source]
            weights = rng.integers(-wmax, wmax + 1, size=(out[0], int(np.prod(ins))))
            if len(out) == 3:
                weights = rng.integers(-wmax, wmax + 1, size=(out[0], ins[0], 1, 1))
                synapses.append(synapse(source, "conv2d", weights, weight_bits=wb,
                                        kernel=1, stride=1, padding=0))
            else:
                synapses.append(synapse(source, "linear", weights, weight_bits=wb))
        hi = 2 ** (state_bits - 1) - 1
        if wide:                                 # log-uniform: multi-spike and clamps
            threshold = [max(1, int(2 ** rng.uniform(0, state_bits - 2))) for _ in range(out[0])]
        else:
            threshold = [int(t) for t in rng.integers(1, max(2, hi // 4), size=out[0])]
        frac = int(rng.integers(0, 25)) if wide else 2
        cbits, cfrac = (int(rng.integers(16, 33)), int(rng.integers(0, 25))) if wide else \
            (int(rng.integers(3, 10)), 2)
        ld = layer(name, out, synapses,
                   threshold=threshold if rng.random() < 0.5 else threshold[0],
                   state_bits=state_bits, acc_bits=0,
                   beta=(int(rng.integers(0, 2 ** frac + 1)), frac) if rng.random() < 0.7
                   else (1, 0),
                   reset=str(rng.choice(["subtract", "zero", "none"])),
                   bias=rng.integers(-hi // 4, hi // 4 + 1, size=out[0]) if rng.random() < 0.5
                   else None,
                   spike_limit=int(rng.integers(1, 1000 if wide else 4))
                   if multi_spike and rng.random() < 0.5 else None,
                   v_min=-int(rng.integers(0, hi + 2)) if v_min and rng.random() < 0.5
                   else None,
                   current=(int(rng.integers(0, 2 ** cfrac + 1)), cfrac, cbits)
                   if current and rng.random() < 0.4 else None)
        if not isinstance(ld["threshold"], list):
            ld["threshold"] = int(ld["threshold"])
        layers.append(ld)
        names.append(name)
        shapes[name] = out
    # backward edges: a later layer of the same shape feeding an earlier one
    if recurrence and n > 1 and rng.random() < 0.5:
        i = int(rng.integers(0, n - 1))
        j = int(rng.integers(i + 1, n))
        if shapes[names[j]] == shapes[names[i]]:
            out = shapes[names[i]]
            wb = layers[i]["synapses"][0]["weight_bits"] or 4
            wmax = 2 ** (wb - 1) - 1
            layers[i]["synapses"].append(synapse(
                names[j], "identity", rng.integers(-wmax, wmax + 1, size=(out[0],)),
                weight_bits=wb, delay=int(rng.integers(1, max_delay + 2))))
    doc = model_doc((P, H, W), T, layers, count_clip=clip,
                    readout="membrane" if rng.random() < 0.3 else "spike_count")
    return bound_acc_bits(doc)
