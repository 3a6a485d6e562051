"""Built-in backends. Each registers through the ``flowrecord.backends`` entry points."""
