from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # quiet_helpers, shared by the issue-15 tests
