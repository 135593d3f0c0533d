"""Everything that reaches into Faust, aiokafka, mode or river beyond their public API (docs/runtime.md).

The only package allowed to name their private attributes; :func:`stream.runtime.install.install`
checks the installed versions and attaches every change, failing loudly when one does not fit.
May import: ``stream.pipeline``, ``stream.kafka`` and the base modules.
"""
