"""Child scripts (real Task processes) and helpers for the usage tests: executor helper, task reporter,
log handler, CLI."""
