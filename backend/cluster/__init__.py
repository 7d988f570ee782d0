"""Batch baking and recovery spread over a Ray cluster (``backend bake --ray``): docs/cluster.md."""
