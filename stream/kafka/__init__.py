"""Kafka as the project speaks it: client configuration for both clients, the topics and their specs, partitioning.

May import: ``schemas`` and the base modules (``stream.errors``, ``stream.settings``).
"""
