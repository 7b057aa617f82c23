"""A site's Ed25519 signing key, made at site set-up, and the coordinator's key registry.

The private key (``STATE/privacy/site.key``, mode 0600) never leaves the site; it signs
every entry of the site's privacy ledger. The public key (``site.pub``, 64 hex digits)
is given to the coordinator, who registers it under the site's name
(``fedsynth server register-site``): the registry is a folder of ``<site-name>.pub``
files. The server accepts only releases signed by a registered key, and the auditor
checks every entry against the same registry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.errors import ConfigError

KEY_FILE = Path("privacy") / "site.key"
PUB_FILE = Path("privacy") / "site.pub"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _raw_public(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def load_or_create(state_dir: str | Path) -> tuple[Ed25519PrivateKey, str]:
    """The site's signing key and its public key (hex); made on first use.

    Args:
        state_dir: the site's private state folder.

    Returns:
        ``(private key, public key as 64 hex digits)``.
    """
    path = Path(state_dir) / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                f"{path} is not an Ed25519 key: move it away and set the site up again"
            )
        return key, _raw_public(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = _raw_public(key)
    (Path(state_dir) / PUB_FILE).write_text(public + "\n")
    return key, public


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """Signature of ``message`` as hex."""
    return key.sign(message).hex()


def verify(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is ``public_hex``'s signature of ``message``."""
    from cryptography.exceptions import InvalidSignature

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
        return True
    except (InvalidSignature, ValueError):
        return False


def register(registry: str | Path, site_name: str, public_hex: str) -> Path:
    """Register ``site_name``'s public key with the coordinator.

    Raises:
        ConfigError: for a bad name or key, or a name already registered to another key
            (re-keying a site is a deliberate act: remove the old file first).
    """
    if not _NAME.match(site_name):
        raise ConfigError(f"site name {site_name!r}: use letters, digits, '.', '_' or '-'")
    public_hex = public_hex.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", public_hex):
        raise ConfigError("a site public key is 64 hex digits (the site's privacy/site.pub)")
    path = Path(registry) / f"{site_name}.pub"
    if path.exists() and path.read_text().strip() != public_hex:
        raise ConfigError(
            f"{site_name} is already registered with another key ({path}); remove that "
            "file first if the site really has a new key"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(public_hex + "\n")
    return path


def load_registry(registry: str | Path) -> dict[str, str]:
    """``{site name: public key hex}`` from a registry folder (empty if none)."""
    folder = Path(registry)
    if not folder.is_dir():
        return {}
    return {p.stem: p.read_text().strip().lower() for p in sorted(folder.glob("*.pub"))}
