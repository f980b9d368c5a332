"""The built-in synapse kinds, one module each; importing this package registers them
in :data:`sim.registry.KINDS`. A new kind is one new module here (plus its tests);
see docs/architecture.md, "How to add a synapse kind"."""

from . import conv2d, linear, sumpool2d, identity  # noqa: F401
