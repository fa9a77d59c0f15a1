"""Dataset records and caches."""
