"""coloi's shipped models: ``manifest.json`` and the files it lists (see README.md)."""
