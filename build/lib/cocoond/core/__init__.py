"""The pure reconcile core: findings from (DBs, disk listing, now,
thresholds), and when a finding is announced. No I/O, no clock of its own."""
