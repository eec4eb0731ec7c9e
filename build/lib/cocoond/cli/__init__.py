"""The `cocoond` command line and the one-shot `check`."""
