"""Frame images off the wire -> RGB uint8 arrays, with the size checked before decoding so a
small file that claims a huge image (a decompression bomb) is refused cheaply: PNG and JPEG
headers are read here, BMP, TIFF and WebP ones by Pillow (which decodes nothing until asked)."""

from __future__ import annotations

import io
import struct

import numpy as np

from .protocol import (
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    ErrorCode,
    ImagePayload,
    ProtocolError,
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless ...): they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# The protocol's other still formats -> Pillow's name for the one reader it may try on them.
_PILLOW_FORMATS = {"bmp": "BMP", "tiff": "TIFF", "webp": "WEBP"}


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_IMAGE, message)


def png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise _bad("not a PNG file (bad signature or header)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(b"\xff\xd8"):
        raise _bad("not a JPEG file (no start-of-image marker)")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise _bad(f"corrupt JPEG: no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _JPEG_SOF:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        position += 2 + length
    raise _bad("corrupt or truncated JPEG: no frame header")


def header_size(image_format: str, data: bytes) -> tuple[int, int]:
    """(width, height) as a still's header gives them, without decoding its pixels."""
    if image_format == "png":
        return png_size(data)
    if image_format == "jpeg":
        return jpeg_size(data)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[image_format]]) as header:
            return header.size
    except Image.DecompressionBombError as exc:  # far beyond our limits: refuse it as such
        raise _bad(f"{image_format} image outside the limits: {exc}") from None
    except OSError:
        raise _bad(f"not a {image_format} file (no readable header)") from None


def decode_image(image: ImagePayload) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises ProtocolError(bad_image) saying what is wrong."""
    if image.format == "raw":
        return np.frombuffer(image.data, np.uint8).reshape(image.shape)
    width, height = header_size(image.format, image.data)
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE
            and width * height <= MAX_IMAGE_PIXELS):
        raise _bad(f"{image.format} image of {width}x{height} is outside the limits (sides up "
                   f"to {MAX_IMAGE_SIDE}, at most {MAX_IMAGE_PIXELS} pixels)")
    import cv2

    decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise _bad(f"the {image.format} image ({len(image.data)} bytes) does not decode: "
                   "truncated or corrupt")
    if decoded.shape[:2] != (height, width):
        raise _bad(f"the {image.format} image decodes to {decoded.shape[1]}x{decoded.shape[0]}, "
                   f"not the {width}x{height} its header says")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 95) -> dict:
    """An RGB uint8 image as the protocol's ``image`` field (client side; raw needs no cv2);
    ``quality``: JPEG's, and WebP's (above 100: lossless)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a frame must be (height, width, 3) RGB, not {image.shape}")
    if image_format == "raw":
        return {"format": "raw", "data": image.tobytes(), "shape": list(image.shape)}
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r} is not one of {list(IMAGE_FORMATS)}")
    import cv2

    params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}.get(image_format, [])
    ok, data = cv2.imencode(f".{image_format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} frame as {image_format}")
    return {"format": image_format, "data": data.tobytes()}
