"""Event data sets for training: re-exported from :mod:`sim.datasets`.

The data sets (digits, procedural gestures, tonic's on disk) need only numpy, so they
live in ``sim``, where the host tool (``boards.host --dataset digits``) can use them
without torch; training imports them from here.
"""

from sim.datasets import *  # noqa: F401,F403
from sim.datasets import __all__  # noqa: F401
