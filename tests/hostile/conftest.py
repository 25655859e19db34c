"""The hostile-input and secrets suites (issue 10): generators next to the tests that use them."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
