"""Lets the trail tests import the RFC transcription that sits next to them."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
