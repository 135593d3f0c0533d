"""The streaming side of churn-stream: the Faust app, its agents and the feature code they run.

The per-event modules may be compiled (``make native``, :mod:`stream.native`); only where
a compiled build is present is a finder installed here, which keeps the build from being
used once its sources have changed. Without one, nothing is installed.
"""

from stream.native import compiled_present, install_finder

if compiled_present():
    install_finder()
