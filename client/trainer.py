"""The site trainer: a long-lived process that keeps torch, MONAI and the data warm.

Flower starts a fresh ClientApp process for every message, so a round would otherwise
pay for importing torch and MONAI and rebuilding the network each time (seconds, on
every site, every round). A site may run this trainer beside its SuperNode
(``fedsynth site serve --state-dir S``); the ClientApp then hands the work to it over a
Unix socket in the site's private state directory and only packs the reply. Without a
trainer, the ClientApp does the same work in its own process: results are identical,
only slower.

Safety:

* the socket is created with mode 0600 inside the state dir; only the site's own user
  can connect; nothing listens on the network;
* a request carries the code version of the ClientApp (a hash of the ``common`` and
  ``client`` sources); a trainer running other code refuses it, and the ClientApp falls
  back to in-process training (restart the trainer after an upgrade).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import struct
from dataclasses import asdict
from pathlib import Path

logger = logging.getLogger(__name__)

SOCKET_NAME = "trainer.sock"
_HEADER = struct.Struct("!Q")


def code_version() -> str:
    """A hash of the ``common`` and ``client`` sources this process runs."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for pkg in ("common", "client"):
        for path in sorted((root / pkg).rglob("*.py")):  # subpackages too
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def send_frame(sock: socket.socket, obj) -> None:
    """Send one length-prefixed pickled object."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def recv_frame(sock: socket.socket):
    """Receive one object sent with :func:`send_frame` (None if the peer closed)."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = _recv_exact(sock, size)
    return None if body is None else pickle.loads(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def request(state_dir: str | Path, req: dict, timeout: float):
    """Ask the site's trainer to handle ``req``; None when no compatible trainer runs.

    Args:
        state_dir: the site's state dir (where the trainer's socket lives).
        req: the request (see :func:`handle`): ``op`` (``"train"`` or ``"evaluate"``),
            site and run settings as dicts, weights as numpy arrays.
        timeout: seconds to wait for the reply.

    Returns:
        The trainer's reply dict, or None (no trainer, or one running other code).
    """
    path = Path(state_dir) / SOCKET_NAME
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            send_frame(sock, {**req, "code": code_version()})
            reply = recv_frame(sock)
    except OSError as exc:
        logger.warning(
            "site trainer unavailable (%s); training in this process", type(exc).__name__
        )
        return None
    if reply is None or reply.get("status") == "incompatible":
        logger.warning("site trainer runs other code; restart it. Training in this process")
        return None
    return reply


def handle(req: dict) -> dict:
    """Run one request in this process (the trainer's work, also usable directly)."""
    from client.task import Declined, evaluate_round, train_round
    from common.config import RunSettings, SiteSettings

    site = SiteSettings(**req["site"])
    run = RunSettings(**req["run"])
    try:
        if req["op"] == "train":
            result = train_round(
                site,
                run,
                req["weights"],
                req["round"],
                req.get("proximal_mu", 0.0),
                received=req.get("received"),
            )
            return {"status": "ok", "result": asdict(result)}
        if req["op"] == "synthesize":
            from client.synthesis import synthesize_round

            return {"status": "ok", "result": asdict(synthesize_round(site, run, req["round"]))}
        if req["op"] == "evaluate":
            dice, n = evaluate_round(site, run, req["weights"])
            return {"status": "ok", "result": {"dice": dice, "n": n}}
    except Declined as exc:
        return {"status": "declined", "reason": str(exc)}
    return {"status": "error", "reason": f"unknown operation {req['op']!r}"}


def serve(state_dir: str | Path, ready=None) -> None:
    """Serve requests on ``STATE/trainer.sock`` until interrupted.

    Args:
        state_dir: the site's state dir.
        ready: optional callable invoked once the socket listens.
    """
    import torch  # noqa: F401  (warm the heavy imports before the first request)

    import client.task  # noqa: F401
    import common.seg.training  # noqa: F401
    import common.seg.transforms  # noqa: F401

    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = state / SOCKET_NAME
    path.unlink(missing_ok=True)
    version = code_version()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        old = os.umask(0o177)
        try:
            server.bind(str(path))
        finally:
            os.umask(old)
        server.listen(4)
        logger.info("site trainer listening on %s (code %s)", path, version)
        if ready:
            ready()
        try:
            while True:
                conn, _ = server.accept()
                with conn:
                    req = recv_frame(conn)
                    if req is None:
                        continue
                    if req.get("code") != version:
                        send_frame(conn, {"status": "incompatible", "code": version})
                        continue
                    try:
                        reply = handle(req)
                    except Exception as exc:  # keep serving; the ClientApp reports it
                        logger.exception("site trainer request failed")
                        reply = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
                    try:
                        send_frame(conn, reply)
                    except OSError:
                        logger.warning("ClientApp went away before the reply was sent")
        finally:
            path.unlink(missing_ok=True)
