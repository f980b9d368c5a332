"""Importers: trained spiking nets from other frameworks become model directories.

Each importer walks the source network in order and hands every layer to a *handler*:
one function per layer type, registered by framework and type name (the way hls4ml
registers its converters). Adding a layer type is one new function::

    from quant.importers import register

    @register("snntorch", "MyPool2d")
    def _my_pool(module, name, ctx):
        ctx.builder.add_pool(name, module.k)

A handler receives the source layer, a layer name and the import context (``ctx``:
options and a :class:`quant.importers.builder.NetBuilder` that assembles contract
layers, see that module for how pooling and strict compares are mapped). A layer type
without a handler is an error naming the layer and its type; a known type that cannot be
mapped is registered with :func:`reject` and its reason; registering a type twice is an
error.

Importers (see their module docstrings for the exact mapping):

- :func:`quant.importers.snntorch.import_snntorch` (``torch.nn.Sequential`` of
  Conv2d/Linear/AvgPool2d/MaxPool2d/Flatten/Dropout and ``snntorch.Leaky``);
- :func:`quant.importers.nir.import_nir` (NIR chains, ``nir.read`` files) and
  :func:`quant.importers.nir.model_from_nir` (any NIR graph: chains as above, graphs
  through :mod:`quant.importers.nir_graph` into version-2 models);
- :func:`quant.importers.sinabs.import_sinabs` (sinabs ``nn.Sequential``, version 2).

Graph importers describe populations and synapses with
:mod:`quant.importers.graph` and register their node handlers here too (frameworks
``nir.graph.synapse``, ``nir.graph.neuron``, ``sinabs``).

Both return a :class:`quant.ir.FloatNet` and the mode they chose; :func:`to_model`
quantizes it (exactly when it holds integers). The command line is
``python -m quant.importers snntorch|nir FILE --out models/NAME``.
"""

from __future__ import annotations

from ..ir import NetImportError

__all__ = ["register", "reject", "handler_for", "supported_types", "to_model",
           "NetImportError"]

#: ``{(framework, type_name): handler}``
HANDLERS = {}
#: ``{(framework, type_name): reason}`` of the types registered with :func:`reject`.
REJECTED = {}


def register(framework, *type_names):
    """Decorator: register ``fn(layer, name, ctx)`` as the handler of ``type_names``.

    Raises
    ------
    ValueError
        A type name of ``framework`` already has a handler (nothing is registered then).
    """
    def deco(fn):
        for t in type_names:
            old = HANDLERS.get((framework, t))
            if old is not None:
                raise ValueError(f"{framework} type {t!r} already has the handler "
                                 f"{old.__module__}.{old.__qualname__}; a second one would "
                                 f"silently replace it")
        for t in type_names:
            HANDLERS[(framework, t)] = fn
        return fn
    return deco


def reject(framework, reason, *type_names):
    """Register ``type_names`` as known but not supported: importing one raises
    :class:`NetImportError` naming the layer, its type and ``reason``."""
    def rejected(layer, name, ctx):
        raise NetImportError(f"{ctx.builder.where}: {ctx.builder.noun} {name} "
                             f"({type(layer).__name__}): {reason}")
    register(framework, *type_names)(rejected)
    for t in type_names:
        REJECTED[(framework, t)] = reason
    return rejected


def handler_for(framework, type_name):
    """The handler of a layer type, or ``None``."""
    return HANDLERS.get((framework, type_name))


def supported_types(framework, *, rejected=True):
    """Sorted type names that have a handler; ``rejected=False`` leaves out the types
    registered with :func:`reject`."""
    return sorted(t for (f, t) in HANDLERS
                  if f == framework and (rejected or (f, t) not in REJECTED))


def to_model(net, integer, *, weight_bits=None, state_bits=16, beta_frac_bits=None):
    """Quantize an imported net: exactly in integer mode, with chosen scales otherwise.

    ``weight_bits=None`` picks, in integer mode, the smallest width (at least 2) that
    holds every weight, and 8 otherwise.
    """
    import numpy as np

    from ..ptq import quantize
    if weight_bits is None:
        weight_bits = 8
        if integer:
            wmax = max([int(np.abs(layer.weight).max()) for layer in net.layers
                        if layer.weight is not None and layer.weight.size] or [1])
            weight_bits = max(2, (wmax).bit_length() + 1)
            if weight_bits > 16:
                raise NetImportError(f"a weight of magnitude {wmax} needs {weight_bits} bits "
                                     f"(at most 16)")
    return quantize(net, weight_bits=weight_bits, state_bits=state_bits,
                    beta_frac_bits=beta_frac_bits, exact=bool(integer))
