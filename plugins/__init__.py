"""coloi's built-in plugins, registered through the ``coloi`` entry-point group like any other."""
