"""Admin for model versions and runs (registered as their tables arrive)."""
