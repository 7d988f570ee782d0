"""Training data: body poses from motion capture or per-joint ranges, for the sample generator."""
