"""Pseudonyms only the site can reverse: keyed hashes, date offsets, re-identification table.

Everything here is derived from the site secret (``STATE/site.secret``, 32 random bytes,
mode 0600), which never leaves the site:

* :meth:`SiteSecret.pseudonym` and :meth:`SiteSecret.uid` are HMAC-SHA256 under the
  secret: the same input always gives the same output at one site (so references between
  files stay intact across files and runs), and nobody without the secret can compute or
  invert them;
* :meth:`SiteSecret.date_offset_days` is a keyed, per-patient shift for the Retain
  Longitudinal Temporal Information with Modified Dates option;
* :class:`ReidentificationTable` remembers which original value each pseudonym stands
  for, encrypted at rest with AES-256-GCM under a key derived from the secret (HKDF), so
  that authorised staff at the site can map a pseudonym back (``fedsynth reidentify``).

Example:
    >>> s = SiteSecret(b"0123456789abcdef0123456789abcdef")
    >>> s.pseudonym("PatientID", "MRN1") == s.pseudonym("PatientID", "MRN1")
    True
    >>> s.uid("1.2.3").startswith("2.25.")
    True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from common.errors import IntakeError

SECRET_FILE = "site.secret"
TABLE_FILE = "reidentification.table"


class SiteSecretError(IntakeError):
    """No site secret where one was expected, or one where a new one was asked for."""


class SiteSecret:
    """The site's pseudonymisation key.

    Args:
        key: at least 16 random bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError(f"site secret must be at least 16 bytes, got {len(key)}")
        self._key = key

    @classmethod
    def load(cls, path: str | Path) -> SiteSecret:
        """Read the secret at ``path``; never makes one.

        A missing secret is an error, not a new secret: a mistyped path would otherwise
        give every patient new pseudonyms and break longitudinal linkage without a word.

        Raises:
            SiteSecretError: no file at ``path``; the message names it and says how to
                make one for a new site.
        """
        path = Path(path)
        if not path.is_file():
            raise SiteSecretError(
                f"no site secret at {path}: every pseudonym of this site comes from it. "
                "If the site has one, point to it (a wrong --state-dir or --site-secret?); "
                f"for a new site, make it once with `fedsynth site keygen --state-dir "
                f"{path.parent}` or add --new-secret"
            )
        return cls(path.read_bytes())

    @classmethod
    def create(cls, path: str | Path) -> SiteSecret:
        """Make a new random secret at ``path`` (mode 0600, its folder too if needed).

        Raises:
            SiteSecretError: a secret is already there (it is never replaced).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SiteSecretError(
                f"a site secret already exists at {path}; it is never replaced (a new one "
                "would give every patient new pseudonyms): drop --new-secret"
            ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    @classmethod
    def open(cls, path: str | Path, new: bool = False) -> SiteSecret:
        """:meth:`create` when ``new``, else :meth:`load`."""
        return cls.create(path) if new else cls.load(path)

    def digest(self, kind: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` in the namespace ``kind``."""
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, kind: str, value: str) -> str:
        """A stable 16-character token for ``value`` (fits SH); not reversible without the key."""
        return "PS-" + self.digest(kind, value)[:7].hex().upper()[:13]

    def uid(self, value: str) -> str:
        """A UID under the 2.25 root derived from ``value`` (PS3.5 B.2)."""
        return "2.25." + str(int.from_bytes(self.digest("uid", value)[:16], "big"))

    def date_offset_days(self, patient: str, max_days: int = 3650) -> int:
        """A keyed shift in days for one patient, in ``[-max_days, -1]`` (always earlier)."""
        n = int.from_bytes(self.digest("date-offset", patient)[:8], "big")
        return -1 - n % max_days

    def table_key(self) -> bytes:
        """The AES-256 key that protects the re-identification table (HKDF-SHA256)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"fedsynth re-identification table v1",
        ).derive(self._key)


class ReidentificationTable:
    """Pseudonym -> original value, kept encrypted at rest (AES-256-GCM).

    The file holds a 12-byte nonce followed by the ciphertext of a JSON object
    ``{pseudonym: {"kind": keyword, "value": original}}``; it is rewritten atomically.

    Args:
        path: the table file (usually ``STATE/reidentification.table``).
        secret: the site secret the table key is derived from.
    """

    def __init__(self, path: str | Path, secret: SiteSecret) -> None:
        self.path = Path(path)
        self._key = secret.table_key()
        self.entries: dict[str, dict[str, str]] = self._load()

    def _load(self) -> dict[str, dict[str, str]]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not self.path.exists():
            return {}
        blob = self.path.read_bytes()
        try:
            plain = AESGCM(self._key).decrypt(blob[:12], blob[12:], b"fedsynth-reid")
        except InvalidTag:
            raise ValueError(
                f"{self.path} cannot be decrypted with this site secret "
                "(wrong secret, or the table was altered)"
            ) from None
        return json.loads(plain)

    def add(self, mapping: dict[str, tuple[str, str]]) -> int:
        """Record ``{pseudonym: (kind, original)}``; return how many were new."""
        new = 0
        for pseudonym, (kind, value) in mapping.items():
            if pseudonym not in self.entries:
                self.entries[pseudonym] = {"kind": kind, "value": value}
                new += 1
        return new

    def save(self) -> None:
        """Encrypt and write the table (mode 0600, atomic replace)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        blob = nonce + AESGCM(self._key).encrypt(
            nonce, json.dumps(self.entries).encode(), b"fedsynth-reid"
        )
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        tmp.replace(self.path)

    def lookup(self, pseudonym: str) -> dict[str, str] | None:
        """The original behind ``pseudonym`` (``{"kind", "value"}``), or None."""
        return self.entries.get(pseudonym)
