"""The Faust app: wiring, agents, timers, web views and tables, and the worker process that runs it.

May import everything below it: ``stream.runtime``, ``stream.serving``, ``stream.drift``, ``stream.pipeline``, ``stream.kafka``.
"""
