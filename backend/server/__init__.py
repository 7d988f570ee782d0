"""``backend serve``: the body-recovery backend behind a ZeroMQ + msgpack protocol
(docs/protocol.md). ``protocol`` and ``client`` import neither torch nor the estimators, so they
run inside Blender's Python."""
