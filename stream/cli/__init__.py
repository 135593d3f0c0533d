"""The ``churn`` command: parsing, settings, and the rendering of each command's result. The top layer."""
