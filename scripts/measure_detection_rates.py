#!/usr/bin/env python3
"""How often MediaPipe finds each part on real footage, and what the second chances add:

    python scripts/measure_detection_rates.py [CLIP ...] [--max-frames N]

CLIPs default to the real clips in ``../shared/data/real`` (mmhuman3d's single- and
multi-person demos, mmpose's demo, the signing clip). Per clip and part (face, left hand, right
hand): the share of frames Holistic found it in on its own (``first``), and with the second
chances of ``perception/crops.py`` and the regions carried over from the frame before
(``final``); and the detection time per frame. This is how the crop pass is judged.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backend.perception.frames import open_footage
from backend.perception.holistic import detect_clip

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CLIPS = ["mmhuman3d/demo/resources/single_person_demo.mp4",
         "mmhuman3d/demo/resources/multi_person_demo.mp4",
         "mmpose/demo/resources/demo.mp4",
         "pose/src/python/tests/data/test_video.mp4"]


def measure(path: Path, max_frames: int | None) -> dict:
    source = open_footage(path)
    frames = (frame for frame in source if max_frames is None or frame.index < max_frames)
    start = time.perf_counter()
    detections = detect_clip(frames, source.width, source.height)
    seconds = time.perf_counter() - start
    count = len(detections.frames)
    final = detections.rates()
    return {"clip": path.name, "frames": count, "s_per_frame": round(seconds / count, 3),
            **{f"{part}_first": round((detections.first_pass_rates or {}).get(part, 0.0), 3)
               for part in ("face", "left_hand", "right_hand")},
            **{f"{part}_final": round(final[part], 3)
               for part in ("face", "left_hand", "right_hand")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args()
    for path in args.clips or [REAL / clip for clip in CLIPS]:
        print(measure(path, args.max_frames), flush=True)


if __name__ == "__main__":
    main()
