"""`python -m benchmarks [--quick]`: see benchmarks/__init__.py."""
import sys

from benchmarks.main import main

sys.exit(main())
