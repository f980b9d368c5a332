"""Shared test settings.

Hypothesis profiles (pick one with ``HYPOTHESIS_PROFILE=<name>``, default ``ci``):

- ``ci``: no per-example deadline (CI machines are slow and shared); test modules set
  their own ``max_examples`` where they need more than hypothesis's default;
- ``dev``: few examples, for a quick local loop;
- ``thorough``: ten times the examples, for a long local search.
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", **_common)
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
