"""`cocoond run`: the shell that feeds the core file events and turns what
it says into log lines, systemd notifications and metrics."""
