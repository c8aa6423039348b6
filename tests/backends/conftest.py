import sys
from pathlib import Path

# `reference` (tests/reference) is imported as a top-level package.
TESTS = str(Path(__file__).resolve().parent.parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
