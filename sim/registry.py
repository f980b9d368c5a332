"""The registry of synapse kinds: each kind's rules in one place, looked up by name.

A synapse is one edge into a layer (docs/semantics.md, version 2). Its ``type`` names a
*kind* (``conv2d``, ``linear``, ``sumpool2d``, ``identity``). Everything the project
knows about one kind lives in one :class:`Kind` object, registered once in
:data:`KINDS` (the way hls4ml registers one handler per layer type):

- the format: which geometry fields it has, the shape it reads its source as, the
  output shape it makes, the shape of its weights (``None``: no weights, and
  ``weight_bits`` null);
- the contract: the fan-in bound that ``acc_bits`` must cover;
- the NumPy reference: event-driven accumulation of one tap;
- the compiled reference: the arrays that one of the scatter primitives of
  :mod:`sim.kernels` needs (a kind picks a primitive, the kernel never sees its name);
- the cycle model: how many output positions one input event reaches;
- ROM packing of the exchange image, where the kind has one;
- random draws for :mod:`sim.randmodel` (so random graphs cover every kind).

The built-in kinds are the modules of :mod:`sim.kinds`, one per kind. Other packages
add their own part of a kind in their own module with :meth:`Kind.attach`, e.g. the
hardware engine or the torch operator::

    from sim.registry import KINDS
    KINDS["conv2d"].attach("hw.engine", ConvEngine)

and find it with :meth:`Kind.part`, which raises a clear error for a kind that has no
such part. Registering a second kind with a name in use, or attaching a part twice, is
an error (nothing is overwritten silently).

Only numpy is needed here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Registry", "Kind", "SynapseError", "KINDS", "is_int"]


class SynapseError(ValueError):
    """A synapse breaks a rule of its kind.

    ``field`` names the synapse's field at fault (``None``: the synapse as a whole);
    :mod:`sim.model` prefixes the file, layer and synapse.
    """

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


def is_int(v):
    """An integer that is not a bool (JSON ``true`` is not a width)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class Registry:
    """Named items, registered once each.

    Parameters
    ----------
    what : str
        What the items are, for messages (``"synapse kind"``).
    """

    def __init__(self, what):
        self.what = what
        self._items = {}

    def register(self, item):
        """Add ``item`` under ``item.name``; a name in use raises ``ValueError``."""
        name = item.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name):
        """Remove ``name`` (a plugin that is unloaded, a test's own kind)."""
        if name not in self._items:
            raise KeyError(f"unknown {self.what} {name!r}")
        del self._items[name]

    def __getitem__(self, name):
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise KeyError(f"unknown {self.what} {name!r}, expected one of "
                           f"{', '.join(self._items)}") from None

    def __contains__(self, name):
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def names(self):
        """The registered names, in registration order."""
        return tuple(self._items)


class Kind:
    """The rules of one synapse kind. Subclasses set the attributes and override the
    methods that apply; a kind module registers one instance in :data:`KINDS`.

    Attributes
    ----------
    name : str
        The ``type`` string of the format.
    geometry : bool
        ``kernel``, ``stride`` and ``padding`` are integers (else they must be null).
    spatial : bool
        The kind reads and writes ``(C, H, W)`` tensors (else any shape).
    rom_layout : str or None
        The address rule of the exchange ROM image (``None``: no ROM image).
    """
    name = None
    geometry = False
    spatial = False
    #: The address rule of the exchange ROM image (``None``: no ROM image).
    rom_layout = None

    def __init__(self):
        self._parts = {}

    def __repr__(self):
        return f"<synapse kind {self.name}>"

    # -- parts that other packages attach -------------------------------------------------
    def attach(self, part, obj):
        """Attach ``obj`` as this kind's ``part`` (e.g. ``"hw.engine"``); once only."""
        if part in self._parts:
            raise ValueError(f"synapse kind {self.name!r} already has a {part!r} part")
        self._parts[part] = obj
        return obj

    def part(self, part):
        """The attached ``part``; ``KeyError`` with a clear message when there is none."""
        try:
            return self._parts[part]
        except KeyError:
            raise KeyError(f"synapse kind {self.name!r} has no {part!r} part (not "
                           f"supported there yet)") from None

    def has_part(self, part):
        return part in self._parts

    # -- the format -------------------------------------------------------------------------
    def input_shape(self, source_shape):
        """The shape this kind reads its source as (``linear`` flattens)."""
        return tuple(source_shape)

    def check(self, syn, in_shape):
        """Check the geometry fields against the input shape; raise :class:`SynapseError`."""
        if self.geometry:
            for key in ("kernel", "stride", "padding"):
                if not is_int(getattr(syn, key)):
                    raise SynapseError(key, f"expected an integer for {self.name}, got "
                                            f"{getattr(syn, key)!r}")
            if syn.kernel < 1 or syn.stride < 1 or syn.padding < 0:
                raise SynapseError(None, f"kernel {syn.kernel}, stride {syn.stride}, padding "
                                         f"{syn.padding}: need kernel >= 1, stride >= 1, "
                                         f"padding >= 0")
            if syn.padding >= syn.kernel:
                raise SynapseError("padding", f"{syn.padding} must be smaller than the kernel "
                                              f"{syn.kernel}")
        else:
            for key in ("kernel", "stride", "padding"):
                if getattr(syn, key) is not None:
                    raise SynapseError(key, f"must be null for a {self.name} synapse")
        if self.spatial and len(in_shape) != 3:
            raise SynapseError("source", f"a {self.name} synapse reads a (C, H, W) tensor, "
                                         f"its source has shape {list(in_shape)}")

    def out_shape(self, syn, in_shape, channels):
        """The layer output shape this synapse makes from ``in_shape``; ``channels`` is
        the layer's ``out_shape[0]`` (for kinds whose weights choose it)."""
        raise NotImplementedError

    def weight_shape(self, syn, in_shape, out_shape):
        """Shape of one tap's weights, or ``None`` for a kind without weights."""
        return None

    def fan_in_abs(self, syn, out_shape):
        """``sum |w|`` over the fan-in and the taps of every output channel (an upper
        bound: padding is ignored), as Python integers of shape ``(C_out,)``."""
        raise NotImplementedError

    # -- the NumPy reference ----------------------------------------------------------------
    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        """Add one tap: the input spikes ``src`` (flat ``(C, H, W)`` indices) with counts
        ``count`` times the weights ``w`` (int64, :meth:`weight_shape`) to the flat
        accumulator ``acc``. Returns the weight additions done (the synaptic operations)."""
        raise NotImplementedError

    # -- the compiled reference -------------------------------------------------------------
    def pack(self, syn, w, in3, out3):
        """Data of one tap for the compiled kernel (:mod:`sim.kernels`):
        ``(primitive, K, S, P, weights, table)`` with ``in3``/``out3`` the ``(C, H, W)``
        shapes; see the primitives there."""
        raise NotImplementedError

    # -- the cycle model --------------------------------------------------------------------
    def event_positions(self, syn, in3, out3):
        """Output positions ``(y, x)`` one input event at each ``(c, y, x)`` of ``in3``
        reaches (int64 ``in3``-shaped; each position is ``G`` lane groups of work)."""
        raise NotImplementedError

    def event_updates(self, syn, in3, out3, groups):
        """Updates (iterator cycles of the hardware engine) one input event at each
        ``(c, y, x)`` of ``in3`` makes when the layer has ``groups`` lane groups: one per
        group at each position it reaches (:meth:`event_positions` times ``groups``);
        a kind whose event reaches one channel only overrides this."""
        return self.event_positions(syn, in3, out3) * groups

    def event_window(self, syn, in3, out3):
        """The output window an input event reaches, per input row and column:
        ``(ylo, yhi, xlo, xhi)`` int64 arrays of lengths ``H`` and ``W`` of ``in3`` (rows
        ``ylo[y] .. yhi[y]``, columns ``xlo[x] .. xhi[x]``; empty when ``hi < lo``). The
        cycle model's sparse cores list the words an event's updates reach in the order
        the hardware's iterator issues them (rows, then columns, then lane groups)."""
        raise NotImplementedError

    # -- random models (sim.randmodel) -------------------------------------------------------
    def random_geometry(self, rng, src_shape, out_shape=None, max_channels=3):
        """A random valid synapse of this kind from ``src_shape``: ``(kernel, stride,
        padding, out_shape)``. With ``out_shape`` given, one that makes exactly that
        shape; ``None`` when the draw finds none (or the kind is never drawn)."""
        return None

    # -- ROM packing ------------------------------------------------------------------------
    def rom_columns(self, w):
        """One tap's weights as ``(address, C_out)`` for the exchange ROM image, or
        ``None`` when the kind has no ROM image."""
        return None


#: Every synapse kind, by name.
KINDS = Registry("synapse kind")

# the built-in kinds register themselves (after KINDS exists: they import it)
from . import kinds  # noqa: E402,F401
