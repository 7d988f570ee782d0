"""The wire protocol between clients (Blender add-on, CLI) and ``backend serve``: msgpack maps
over ZeroMQ, validated here in both directions. docs/protocol.md is the readable version.

Pure: no sockets, no torch, no file I/O, so the Blender add-on can import it with only numpy and
msgpack, and the fuzz test can hammer it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from ..conventions import DEFAULT_ASSET_ID, MAX_PEOPLE
from ..errors import InputError
from ..results import ClipResults, ResultsError, results_from_message

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Size limits. A message bigger than MAX_MESSAGE_BYTES is dropped by ZeroMQ itself (the
# connection is closed), so nothing bigger is ever parsed.
MAX_MESSAGE_BYTES = 64 * 2**20
MAX_IMAGE_BYTES = 48 * 2**20
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_STRING = 256
MAX_ID_STRING = 64
MAX_FIELDS = 32
MAX_INDEX = 2**31 - 1
MAX_SMOOTH = 10.0
MAX_FPS = 1000.0
MAX_SUBJECT_VALUES = 4096  # numbers in session.open's 'subject' (an EHM's holds ~1,000)

# Still formats a frame may come in (the footage_files.STILL_FORMATS the add-on sends as they
# are), and raw RGB pixels.
IMAGE_FORMATS = ("jpeg", "png", "bmp", "tiff", "webp", "raw")
OPS = ("hello", "ping", "status", "session.open", "frame", "session.close", "cancel",
       "avatar.build", "avatar.render", "avatar.drop", "capture.start", "capture.poll",
       "capture.stop")
MAX_SOURCE = 1024  # capture.start's source: a camera index, a device path, a URL or a file
MAX_AVATAR_FRAMES = 64  # frames one avatar.render may ask for (its reply stays a few MB)
AVATAR_SIDES = (64, 2048)  # avatar.render's max_side: its images' longer side, pixels


class ErrorCode:
    """Every ``error.code`` a reply can carry (docs/protocol.md says when)."""

    BAD_MESSAGE = "bad_message"  # not msgpack, not a map, or more than one payload frame
    BAD_VERSION = "bad_version"  # ``v`` missing or not supported
    UNKNOWN_OP = "unknown_op"
    BAD_FIELD = "bad_field"  # a field missing, of the wrong type, out of range or too long
    BAD_IMAGE = "bad_image"  # image bytes that do not decode, or the wrong size
    UNKNOWN_SESSION = "unknown_session"  # never opened, closed, timed out, or not yours
    BAD_FRAME_ORDER = "bad_frame_order"  # frame indices must increase within a session
    BUSY = "busy"  # the session's window of frames in flight is full: retry after a reply
    TOO_MANY_SESSIONS = "too_many_sessions"
    UNAVAILABLE = "unavailable"  # estimator or asset not available on this server
    PERSON_NOT_FOUND = "person_not_found"  # the footage does not show the person asked for
    CANCELLED = "cancelled"  # a queued frame whose session was cancelled or reclaimed
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"  # a bug or a failed estimator: the message says what happened


class ProtocolError(InputError):
    """A message that breaks the protocol (or asks for what cannot be done); becomes an
    ``ok: false`` reply with its ``code``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# -- encoding -------------------------------------------------------------------------------


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True, default=_encode_default)


def unpack(data: bytes) -> dict:
    """Parse one message. Plain msgpack only: no extension types, no object hooks; map keys must
    be strings; sizes are bounded by MAX_MESSAGE_BYTES."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"message of {len(data)} bytes is over the "
                            f"{MAX_MESSAGE_BYTES}-byte limit")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                                  ext_hook=_refuse_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for broken input
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            f"not a msgpack message ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            f"a message must be a msgpack map, not {type(message).__name__}")
    return message


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"msgpack extension type {code} is not allowed")


def _encode_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} over the protocol")


_ARRAY_DTYPES = {"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"}


def encode_array(array: np.ndarray) -> dict:
    """A numpy array as ``{"nd": 1, "dtype", "shape", "data"}`` (little-endian, C order)."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if dtype.str not in _ARRAY_DTYPES:
        raise TypeError(f"arrays of {array.dtype} are not part of the protocol")
    return {"nd": 1, "dtype": dtype.str, "shape": list(array.shape),
            "data": array.astype(dtype, copy=False).tobytes()}


def decode_array(value: Any, name: str = "array") -> np.ndarray:
    if not (isinstance(value, dict) and value.get("nd") == 1):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name} is not an encoded array")
    dtype, shape, data = value.get("dtype"), value.get("shape"), value.get("data")
    if dtype not in _ARRAY_DTYPES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: dtype {dtype!r} is not one of "
                            f"{sorted(_ARRAY_DTYPES)}")
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(isinstance(n, int) and 0 <= n <= MAX_MESSAGE_BYTES for n in shape)):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: bad shape {shape!r}")
    if not isinstance(data, bytes) or len(data) != np.dtype(dtype).itemsize * math.prod(shape):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name}: {len(data or b'')} bytes do not "
                            f"hold a {dtype} array of shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_arrays(value: Any) -> Any:
    """Every encoded array inside nested maps and lists, as numpy arrays (client side)."""
    if isinstance(value, dict):
        if value.get("nd") == 1 and set(value) == {"nd", "dtype", "shape", "data"}:
            return decode_array(value)
        return {key: decode_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_arrays(item) for item in value]
    return value


# -- requests -------------------------------------------------------------------------------


@dataclass
class ImagePayload:
    format: str  # one of IMAGE_FORMATS
    data: bytes
    shape: tuple[int, int, int] | None = None  # (height, width, 3) for raw


@dataclass
class Request:
    op: str
    id: int | str
    session: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # op-specific, validated
    image: ImagePayload | None = None


def request_id(message: Any) -> int | str | None:
    """The request's ``id`` if it is a valid one, so even a broken request can be answered."""
    if isinstance(message, dict):
        value = message.get("id")
        if _is_valid_id(value):
            return value
    return None


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 2**63
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_STRING


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, message)


def _string(message: dict, key: str, default: str | None = None, limit: int = MAX_STRING
            ) -> str:
    value = message.get(key, default)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise _bad(f"{key!r} must be a non-empty string of at most {limit} characters")
    return value


def _number(message: dict, key: str, default: float | None, low: float, high: float,
            integer: bool = False) -> float:
    value = message.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise _bad(f"{key!r} must be {'an integer' if integer else 'a number'}")
    if not (math.isfinite(value) and low <= value <= high):
        raise _bad(f"{key!r} = {value} is outside [{low}, {high}]")
    return value


def _image(value: Any) -> ImagePayload:
    if not isinstance(value, dict):
        raise _bad("'image' must be a map {format, data[, shape]}")
    image_format = value.get("format")
    if image_format not in IMAGE_FORMATS:
        raise _bad(f"image format {image_format!r} is not one of {list(IMAGE_FORMATS)}")
    data = value.get("data")
    if not isinstance(data, bytes) or not data:
        raise _bad("image 'data' must be non-empty bytes")
    if len(data) > MAX_IMAGE_BYTES:
        raise _bad(f"image of {len(data)} bytes is over the {MAX_IMAGE_BYTES}-byte limit")
    shape = None
    if image_format == "raw":
        shape = value.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3 and shape[2] == 3
                and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
                and 0 < shape[0] <= MAX_IMAGE_SIDE and 0 < shape[1] <= MAX_IMAGE_SIDE):
            raise _bad(f"raw image 'shape' must be [height, width, 3] with sides up to "
                       f"{MAX_IMAGE_SIDE}, not {shape!r}")
        if shape[0] * shape[1] * 3 != len(data):
            raise ProtocolError(ErrorCode.BAD_IMAGE, f"raw image of shape {shape} needs "
                                f"{shape[0] * shape[1] * 3} bytes, got {len(data)}")
        shape = tuple(shape)
    return ImagePayload(image_format, data, shape)


def _flag(message: dict, key: str, default: bool) -> bool:
    value = message.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"{key!r} must be true or false")
    return value


def _intrinsics(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("'intrinsics' must be a map {focal[, cx, cy]} in pixels, or nil")
    out = {"focal": _number(value, "focal", None, 1.0, 1e6)}
    for key in ("cx", "cy"):
        if key in value:
            out[key] = _number(value, key, None, -1e6, 1e6)
    return out


def _subject(value: Any) -> dict[str, list[float]] | None:
    """``subject``: per-subject parameters (name -> flat list of finite numbers) from an earlier
    session's close reply, held fixed by the tracker. Names are checked against the asset when
    the session opens."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_FIELDS:
        raise _bad(f"'subject' must be a map of at most {MAX_FIELDS} parameter names to lists "
                   "of numbers, or nil")
    out, total = {}, 0
    for name, numbers in value.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_STRING:
            raise _bad("'subject' keys must be parameter names")
        if not isinstance(numbers, list):
            raise _bad(f"subject parameter {name!r} must be a list of numbers")
        total += len(numbers)
        if total > MAX_SUBJECT_VALUES:
            raise _bad(f"'subject' holds at most {MAX_SUBJECT_VALUES} numbers")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                   for x in numbers):
            raise _bad(f"subject parameter {name!r} must hold finite numbers only")
        out[name] = [float(x) for x in numbers]
    return out


def _person(value: Any) -> int | None:
    """``person``: which person to follow, 1 = the leftmost in the first frame showing anybody;
    nil lets the detector pick the most prominent one."""
    if value is None:
        return None
    return int(_number({"person": value}, "person", None, 1, MAX_PEOPLE, integer=True))


def _adapter(value: Any) -> str | None:
    """``adapter``: the name of an adapter installed on the server (a folder under its
    ``$PEAR_HOME/adapters``, listed by ``hello``), or nil for the regressor as it is."""
    if value is None:
        return None
    if not (isinstance(value, str) and 0 < len(value) <= MAX_ID_STRING
            and value[0] != "." and all(c.isalnum() or c in "_.-" for c in value)):
        raise _bad("'adapter' must be the name of an adapter `hello` lists (letters, digits, "
                   "'_', '.', '-'), or nil")
    return value


def _person_box(value: Any) -> list[float] | None:
    """``person_box``: follow whoever is at this box [x0, y0, x1, y1] (pixels) in the first
    frame, e.g. the ``box`` an earlier session's last frame reply gave for the same person."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 4):
        raise _bad("'person_box' must be [x0, y0, x1, y1] in pixels, or nil")
    box = [_number({"person_box": v}, "person_box", None, -1e6, 1e6) for v in value]
    if not (box[0] < box[2] and box[1] < box[3]):
        raise _bad(f"'person_box' {box} needs x0 < x1 and y0 < y1")
    return [float(v) for v in box]


def _frame_list(value: Any) -> list[int] | None:
    """``frames`` of avatar.render: positions in the motion, nil for all of them."""
    if value is None:
        return None
    if not (isinstance(value, list) and 0 < len(value) <= MAX_AVATAR_FRAMES):
        raise _bad(f"'frames' must be a list of 1-{MAX_AVATAR_FRAMES} frame positions, or nil")
    return [int(_number({"frames": v}, "frames", None, 0, MAX_INDEX, True)) for v in value]


def _motion(value: Any) -> ClipResults:
    """``motion`` of avatar.render: a result map as ``session.close`` replies carry it; its
    arrays' fit to the body model is checked where the avatar is known."""
    if not isinstance(value, dict):
        raise _bad("'motion' must be a result map (a session.close reply's 'results')")
    try:
        return results_from_message(decode_arrays(value))
    except ProtocolError as exc:
        raise _bad(f"'motion': {exc.message}") from None
    except (ResultsError, ValueError) as exc:
        raise _bad(f"'motion': {exc}") from None


def _avatar_fields(op: str, message: dict) -> dict[str, Any]:
    if op == "avatar.build":
        return {"asset": _string(message, "asset", DEFAULT_ASSET_ID),
                "intrinsics": _intrinsics(message.get("intrinsics"))}
    fields: dict[str, Any] = {"avatar": _string(message, "avatar", limit=MAX_ID_STRING)}
    if op == "avatar.render":
        fields.update(motion=_motion(message.get("motion")),
                      frames=_frame_list(message.get("frames")),
                      max_side=int(_number(message, "max_side", 512, *AVATAR_SIDES, True)))
    return fields


def parse_request(message: dict) -> Request:
    """Validate a client's request map (from ``unpack``); raises ProtocolError."""
    version = message.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r} is not "
                            f"supported; this server speaks {list(SUPPORTED_VERSIONS)}")
    if not _is_valid_id(message.get("id")):
        raise _bad("'id' must be an integer in [0, 2^63) or a string of 1-64 characters")
    if len(message) > MAX_FIELDS:
        raise _bad(f"a request has at most {MAX_FIELDS} fields")
    op = message.get("op")
    if not isinstance(op, str) or op not in OPS:
        shown = op[:40] if isinstance(op, str) else type(op).__name__
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {shown!r}; ops: {list(OPS)}")
    request = Request(op=op, id=message["id"])
    if op in ("frame", "session.close", "cancel"):
        request.session = _string(message, "session", limit=MAX_ID_STRING)
    if op == "hello":
        if "client" in message:
            request.fields["client"] = _string(message, "client")
    elif op == "session.open":
        request.fields = {
            "estimator": _string(message, "estimator", "tracker"),
            "asset": _string(message, "asset", DEFAULT_ASSET_ID),
            "smooth": _number(message, "smooth", 1.0, 0.0, MAX_SMOOTH),
            "fps": _number(message, "fps", 30.0, 0.001, MAX_FPS),
            "intrinsics": _intrinsics(message.get("intrinsics")),
            "rig": _flag(message, "rig", False),
            "subject": _subject(message.get("subject")),
            "person": _person(message.get("person")),
            "person_box": _person_box(message.get("person_box")),
            "adapter": _adapter(message.get("adapter")),
            "live": _flag(message, "live", False),
        }
        if request.fields["person"] is not None and request.fields["person_box"] is not None:
            raise _bad("give 'person' or 'person_box', not both")
        if request.fields["live"] and request.fields["estimator"] == "detector":
            raise _bad("'live' answers each frame with its body: open the session with a 3D "
                       "estimator, not 'detector' (whose frame replies already carry the "
                       "keypoints)")
    elif op == "frame":
        request.fields = {"index": int(_number(message, "index", None, 0, MAX_INDEX, True)),
                          "time": _number(message, "time", 0.0, 0.0, 1e9)}
        request.image = _image(message.get("image"))
    elif op == "capture.start":
        request.fields = {
            "source": _string(message, "source", limit=MAX_SOURCE),
            "estimator": _string(message, "estimator", "tracker"),
            "asset": _string(message, "asset", DEFAULT_ASSET_ID),
            "smooth": _number(message, "smooth", 1.0, 0.0, MAX_SMOOTH),
            "intrinsics": _intrinsics(message.get("intrinsics")),
            "adapter": _adapter(message.get("adapter")),
        }
        if request.fields["estimator"] == "detector":
            raise _bad("a capture answers each frame with its body: use a 3D estimator, not "
                       "'detector'")
    elif op in ("capture.poll", "capture.stop"):
        request.fields = {"capture": _string(message, "capture", limit=MAX_ID_STRING)}
        if op == "capture.poll":
            request.fields["after"] = int(_number(message, "after", -1, -1, MAX_INDEX, True))
            request.fields["rig"] = _flag(message, "rig", False)
    elif op.startswith("avatar."):
        request.fields = _avatar_fields(op, message)
        if op == "avatar.build":
            request.image = _image(message.get("image"))
    return request


# -- replies --------------------------------------------------------------------------------


def ok_reply(request_id: int | str | None, **fields: Any) -> dict:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, **fields}


def error_reply(request_id: int | str | None, code: str, message: str) -> dict:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": False,
            "error": {"code": code, "message": message[:1000]}}


def parse_reply(message: dict) -> dict:
    """Check a server's reply map (client side); raises ProtocolError if it is not one."""
    if message.get("v") not in SUPPORTED_VERSIONS:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"the server replied with protocol version "
                            f"{message.get('v')!r}; this client speaks {list(SUPPORTED_VERSIONS)}")
    if not isinstance(message.get("ok"), bool) or "id" not in message:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a reply needs 'ok' (bool) and 'id'")
    if not message["ok"]:
        error = message.get("error")
        if not (isinstance(error, dict) and isinstance(error.get("code"), str)
                and isinstance(error.get("message"), str)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "an error reply needs error.code and "
                                "error.message strings")
    return message
