"""CURVE keys for the stream and monitor sockets (`xspress3-ioc --stream-keys DIR`).

Without keys the two zmq sockets are plain TCP: whoever reaches the port gets
the data. With keys, zmq's CURVE mechanism encrypts them and the IOC accepts
only clients whose public key it holds, so a client without the keys gets
nothing (its handshake is refused).

A key directory, as `xspress3-keys DIR` makes it (zmq certificate files):

    server.key, server.key_secret   the IOC's key pair (the IOC reads the secret)
    client.key, client.key_secret   a client's key pair (`--client NAME` adds more)
    authorized/NAME.key             public keys of the clients the IOC accepts

The IOC needs `server.key_secret` and `authorized/`; a client (`xspress3-receive
--keys DIR`, `xspress3-monitor --keys DIR`) needs `server.key` and its own
`NAME.key_secret`. Copy only those: the secret files are the credentials.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SERVER = "server"
CLIENT = "client"
AUTHORIZED = "authorized"

_auth_lock = threading.Lock()
_authenticators: dict[int, ThreadAuthenticator] = {}


class StreamKeyError(ValueError):
    """A key directory that cannot be used; the text says which file and why."""


def _load(path: Path, secret: bool) -> tuple[bytes, Optional[bytes]]:
    if not path.is_file():
        raise StreamKeyError(f"{path}: no such key file (make keys with xspress3-keys DIR)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as ex:
        raise StreamKeyError(f"{path}: not a zmq certificate file: {ex}") from ex
    if secret and not secret_key:
        raise StreamKeyError(f"{path}: holds no secret key")
    return public, secret_key


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise StreamKeyError("this libzmq has no CURVE support; keys cannot be used")


class ServerKeys:
    """The IOC side: its key pair and the directory of accepted client public keys."""

    def __init__(self, directory: Union[str, os.PathLike]):
        _require_curve()
        self.directory = Path(directory)
        self.public, self.secret = _load(self.directory / f"{SERVER}.key_secret", secret=True)
        self.authorized = self.directory / AUTHORIZED
        if not self.authorized.is_dir() or not any(self.authorized.glob("*.key")):
            raise StreamKeyError(f"{self.authorized}: no client public keys (*.key) to accept")

    def secure(self, sock: zmq.Socket) -> None:
        """Make `sock` (before bind) a CURVE server that accepts only authorized clients."""
        sock.setsockopt_string(zmq.ZAP_DOMAIN, _authenticator(sock.context, self.authorized))
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


class ClientKeys:
    """A client side: the server's public key and the client's own key pair."""

    def __init__(self, directory: Union[str, os.PathLike], name: str = CLIENT):
        _require_curve()
        self.directory = Path(directory)
        self.server_public, _ = _load(self.directory / f"{SERVER}.key", secret=False)
        self.public, self.secret = _load(self.directory / f"{name}.key_secret", secret=True)

    def secure(self, sock: zmq.Socket) -> None:
        """Make `sock` (before connect) a CURVE client of the IOC's sockets."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


def server_keys(directory: Optional[str]) -> Optional[ServerKeys]:
    """ServerKeys for `--stream-keys DIR`, or None without it."""
    return None if directory is None else ServerKeys(directory)


def add_client_arguments(parser) -> None:
    """A client's --keys DIR and --key-name NAME (read back with `client_keys`)."""
    parser.add_argument("--keys", metavar="DIR", default=None,
                        help="CURVE key directory (server.key and the client's key_secret) when "
                             "the IOC runs with --stream-keys")
    parser.add_argument("--key-name", default=CLIENT, metavar="NAME",
                        help="which client key pair in --keys to use (default %(default)s)")


def client_keys(directory: Optional[str], name: str = CLIENT) -> Optional[ClientKeys]:
    """ClientKeys for a client's `--keys DIR`, or None without it."""
    return None if directory is None else ClientKeys(directory, name)


def _authenticator(ctx: zmq.Context, authorized: Path) -> str:
    """The ZAP domain whose clients are the keys in `authorized`, served by the one ZAP
    handler of the context (zmq allows one; it lives as long as the process). A domain
    per directory lets sockets with different key directories share a context."""
    domain = "xspress3-" + hashlib.sha1(str(authorized.resolve()).encode()).hexdigest()[:16]
    with _auth_lock:
        auth = _authenticators.get(id(ctx))
        if auth is None:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            _authenticators[id(ctx)] = auth
        auth.configure_curve(domain=domain, location=str(authorized))
    return domain


def make_keys(directory: Union[str, os.PathLike], clients: Sequence[str] = (CLIENT,)) -> list[Path]:
    """Create the server key pair and a key pair per client name, authorizing each
    client; returns the files made. Pairs already there are kept, never overwritten
    (running it again is harmless). Secret files are 0600."""
    _require_curve()
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / AUTHORIZED).mkdir(mode=0o700, exist_ok=True)
    for name in clients:
        if not name or name == SERVER or os.sep in name or name.startswith("."):
            raise StreamKeyError(f"{name!r} is not a client name")
    made = []
    for name in [SERVER, *clients]:
        if (directory / f"{name}.key_secret").exists():
            continue
        public, secret = zmq.auth.create_certificates(directory, name)
        os.chmod(secret, 0o600)
        made += [Path(public), Path(secret)]
        if name != SERVER:
            authorized = directory / AUTHORIZED / f"{name}.key"
            shutil.copyfile(public, authorized)
            made.append(authorized)
    return made


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="xspress3-keys", description=__doc__.splitlines()[0])
    p.add_argument("directory", help="key directory (created if missing)")
    p.add_argument("--client", action="append", default=None, metavar="NAME",
                   help=f"client key pair to make and authorize (default: {CLIENT}; repeatable)")
    args = p.parse_args(argv)
    try:
        made = make_keys(args.directory, args.client or [CLIENT])
    except (StreamKeyError, OSError) as ex:
        print(f"xspress3-keys: {ex}", file=sys.stderr)
        return 2
    for path in made:
        print(path)
    if not made:
        print(f"xspress3-keys: every key pair asked for is already in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
