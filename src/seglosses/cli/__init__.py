"""The ``seglosses`` command line: compare, tune, bench (needs the ``cli`` extra)."""
