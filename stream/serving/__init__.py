"""Serving a model: the registry's read side, the holder that loads and swaps versions, the linear fast path, scoring.

May import: ``schemas``, ``stream.pipeline``, ``stream.kafka`` and the base modules; never Faust or ``training``.
"""
