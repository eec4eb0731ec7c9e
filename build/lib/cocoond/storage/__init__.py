"""The storage API: cocoon's layout, its DB formats as Go reads and writes
them, its locks, and the read-only scan of a tree. Everything another tool
(a registry's push and pull) needs, and nothing that decides what is wrong."""
