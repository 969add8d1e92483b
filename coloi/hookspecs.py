"""Every extension point of coloi, in one place.

A plugin is a module (or object) with functions named like the hooks below, decorated with
``coloi.hookimpl``, and made known through an entry point in the ``coloi`` group::

    [project.entry-points.coloi]
    my_plugin = "my_package.my_module"

coloi's own backends and steps are registered exactly this way. Hooks are called with keyword
arguments; an implementation may accept a subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from coloi.backend import Backend
    from coloi.steps import PostprocessStep, PreprocessStep

hookspec = pluggy.HookspecMarker("coloi")


@hookspec
def coloi_register_backends() -> list[type[Backend]]:
    """Return the colourisation backend classes this plugin provides.

    Called once when the plugin host starts. Each class is a subclass of
    :class:`coloi.backend.Backend` with a unique ``name``; a name that another plugin already
    registered is an error. Return an empty list (or ``None``) to provide none.
    """


@hookspec
def coloi_register_preprocessors() -> list[type[PreprocessStep]]:
    """Return the preprocess step classes this plugin provides.

    Called once when the plugin host starts. Each class is a subclass of
    :class:`coloi.steps.PreprocessStep` with a unique ``name``; preprocess steps work on the grey
    photo before the backend sees it. ``None`` provides none.
    """


@hookspec
def coloi_register_postprocessors() -> list[type[PostprocessStep]]:
    """Return the postprocess step classes this plugin provides.

    Called once when the plugin host starts. Each class is a subclass of
    :class:`coloi.steps.PostprocessStep` with a unique ``name``; postprocess steps work on the
    colourised photo in Lab before it is written. ``None`` provides none.
    """
