"""The Gaussian avatar (GUAVA's design, PEAR §3.3): Gaussians rigged to the body's surface,
built from one image of a person and rendered in any pose (docs/avatar.md)."""
