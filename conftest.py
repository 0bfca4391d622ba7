"""Root of the test suite: makes the shared fixtures available to every test."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy" / "local"))

pytest_plugins = ["tests.fixtures"]
