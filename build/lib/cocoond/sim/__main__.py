"""python -m cocoond.sim ROOT COMMAND ..."""

import sys

from cocoond.sim.cli import main

sys.exit(main())
