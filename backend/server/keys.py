"""CURVE keys: ``backend keys generate DIR`` and loading them on either side.

Layout of DIR (ZeroMQ certificate files):
    server/server.key, server/server.key_secret   stays on the server machine
    authorized_clients/*.key                      public keys of clients let in (add more here)
    client/client.key, client/client.key_secret   give this folder to an artist ...
    client/server.key                             ... with the server's public key in it
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import KeyFileError


def generate(directory: str | Path) -> dict[str, Path]:
    root = Path(directory)
    if (root / "server" / "server.key_secret").exists():
        raise KeyFileError(f"{root} already holds server keys; pick an empty folder (replacing "
                        "keys would lock out every client given the old ones)")
    for sub in ("server", "authorized_clients", "client"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    server_public, _ = zmq.auth.create_certificates(root / "server", "server")
    client_public, _ = zmq.auth.create_certificates(root / "client", "client")
    shutil.copy(client_public, root / "authorized_clients" / "client.key")
    shutil.copy(server_public, root / "client" / "server.key")
    for secret in (root / "server").glob("*.key_secret"):
        secret.chmod(0o600)
    for secret in (root / "client").glob("*.key_secret"):
        secret.chmod(0o600)
    return {"server": root / "server", "client": root / "client",
            "authorized_clients": root / "authorized_clients"}


def _load(path: Path, secret: bool, hint: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFileError(f"missing key file {path}; {hint}")
    try:
        public, private = zmq.auth.load_certificate(path)
    except Exception as exc:
        raise KeyFileError(f"{path} is not a ZeroMQ certificate ({exc}); {hint}") from None
    if secret and private is None:
        raise KeyFileError(f"{path} holds no secret key; {hint}")
    return public, private


_MAKE = "make keys with `backend keys generate DIR`"


def load_server_keys(directory: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of the server, from a ``generate`` folder."""
    return _load(Path(directory) / "server" / "server.key_secret", True, _MAKE)


def start_authenticator(context: zmq.Context, directory: str | Path) -> ThreadAuthenticator:
    """Let in only clients whose public key is in DIR/authorized_clients."""
    allowed = Path(directory) / "authorized_clients"
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise KeyFileError(f"no client public keys in {allowed}: no client could connect; "
                        f"{_MAKE}, or copy a client's .key file there")
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(allowed))
    return authenticator


def load_client_keys(directory: str | Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) from a client folder."""
    root = Path(directory)
    public, secret = _load(root / "client.key_secret", True,
                           f"a client key folder holds client.key_secret and server.key; {_MAKE}")
    server_public, _ = _load(root / "server.key", False,
                             "copy the server's public key (server.key) into this folder")
    return public, secret, server_public
