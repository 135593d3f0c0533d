"""Offline training: the dataset from the feature log and labels, the pipeline, the validation gate, registration, and the launcher that runs retraining jobs on drift alerts.

May import ``schemas``, ``producers`` (the simulator) and ``stream`` below ``stream.app``.
"""
