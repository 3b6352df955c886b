"""`python -m audiocraft.metrics`: see audiocraft/metrics/cli.py."""
import sys

from .cli import main

sys.exit(main())
