"""The PEAR regressor: a ViT on a 256x192 person crop -> the body model's parameters and a
camera, in one forward pass (docs/regressor.md)."""
