"""Child scripts (Task processes) and helpers for the socket transport tests."""
