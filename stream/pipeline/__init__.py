"""The per-event code, free of Faust and Kafka clients: messages, features, the featurizer, the state cache, JSON.

May import: ``schemas``, ``stream.errors``, ``stream.settings``, ``stream.metrics``, ``stream.kafka``.
"""
