"""Training, export and evaluation of coloi's network (needs the ``tf`` extra for Keras)."""
