"""Account events onto Kafka: the simulator of a customer base, the publisher, replay of files, fault injection.

May import ``schemas``, ``stream.pipeline`` (the feature code the simulator's labels follow) and ``stream.kafka``.
"""
