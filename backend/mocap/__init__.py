"""Motion capture: BVH files read in their skeleton conventions, retargeted onto a body model's
joint tree, and the pose sources built on them (training's synthetic samples, the tracker's
learned pose prior)."""
