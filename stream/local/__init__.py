"""Running churn-stream on one machine: embedded and Apache Kafka brokers, child processes, the demo, the bench, the drift replay.

May import everything but ``stream.cli``.
"""
