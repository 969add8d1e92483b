"""coloi: automatic colourisation of black-and-white photographs.

Plugin authors need only ``coloi.hookimpl`` and the classes in ``coloi.backend`` and
``coloi.steps``; importing this package loads nothing heavy.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("coloi")
