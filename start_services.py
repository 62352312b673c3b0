#!/usr/bin/env python3
"""Start the self-hosted AI stack with its secrets from Infisical (see README.md)."""
from stack_launcher.cli import main

if __name__ == "__main__":
    main()
