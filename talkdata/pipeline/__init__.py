"""Per-clip processing, dataset-level stages, executor and cache."""
