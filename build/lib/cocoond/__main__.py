"""`python -m cocoond`: the same command line as the `cocoond` script."""

import sys

from cocoond.cli.main import main

sys.exit(main())
