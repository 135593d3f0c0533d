"""The streaming side of churn-stream: the Faust app, its agents and the feature code they run.

The per-event modules may be compiled (:mod:`stream.native`); the finder
installed here keeps a compiled build from being used once its sources have changed.
"""

from stream.native import install_finder

install_finder()
