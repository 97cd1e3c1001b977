"""Settings for the whole suite.

Hypothesis's per-example deadline is a timed assertion, and the machines that run the suite are shared and
noisy: a slow example is not a failure here (speed is measured in tools/bench/, not asserted in tests).
"""

from hypothesis import settings

settings.register_profile("storebox", deadline=None)
settings.load_profile("storebox")
