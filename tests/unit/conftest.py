"""Shared fixtures of the unit tests (the session's bootstrap model is in ``tests/conftest.py``)."""
