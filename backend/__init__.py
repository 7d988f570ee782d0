"""PEAR for Blender: the headless backend (body model, perception, estimators, server)."""

__version__ = "0.1.0"
