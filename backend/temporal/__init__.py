"""Temporal post-processing of fitted motion: filters, smoothers, wrist-twist compensation."""
