"""Frame sources and detectors (MediaPipe)."""
