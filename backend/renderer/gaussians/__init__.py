"""3D Gaussian splatting: projection, a torch compositor that runs anywhere, gsplat on CUDA."""

from .rasterize import rasterize

__all__ = ["rasterize"]
