"""Live capture (issue #20): frames from a camera, a network stream or a movie in real time."""
