"""Speed measurements that print tables (never timing assertions in tests)."""
