#!/usr/bin/env python3
"""`python benchmarks/run.py [--quick]`, the same as `python -m benchmarks` (see benchmarks/__init__.py)."""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository, not benchmarks/ (its module names)

from benchmarks.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
