"""Scoring the whole customer base at once (``churn score-batch``): states in, a Parquet file (and
optionally topic records) out, with the stream's own feature and scoring code.

May import: ``producers``, ``stream.serving``, ``stream.runtime``, ``stream.pipeline``, ``stream.kafka``
and the base modules; never Faust, ``stream.app`` or ``training``.
"""
