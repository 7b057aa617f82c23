"""Certificates and keys for a consortium: TLS for the link, key pairs for the SuperNodes.

* :func:`make_certificates`: a consortium CA (self-signed) and a SuperLink certificate
  signed by it, valid for the given host names and IP addresses. The CA's private key is
  written beside them, mode 0600: the coordinator keeps it offline after use.
* :func:`make_node_key`: a SuperNode's authentication key pair (ECDSA P-384, OpenSSH
  format, as Flower's ``--auth-supernode-private-key`` expects). The hospital keeps the
  private key; the coordinator registers the public one (``flwr supernode register``).

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> sorted(p.name for p in make_certificates(d, ["localhost", "127.0.0.1"]).values())
    ['ca.crt', 'ca.key', 'server.key', 'server.pem']
    >>> make_node_key(d / "node").name
    'node.key'
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.pem", "server.key"


def _write(path: Path, data: bytes, private: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    else:
        path.write_bytes(data)
    return path


# The SuperLink's own SuperExec reaches it on the loopback over the same TLS port (Flower
# 1.41): a certificate without these names fails every run ("IP address mismatch").
LOOPBACK = ("localhost", "127.0.0.1")


def san_hosts(hosts: list[str]) -> list[str]:
    """The names a SuperLink certificate holds: ``hosts``, then the loopback, once each."""
    return list(dict.fromkeys([*hosts, *LOOPBACK]))


def _san(hosts: list[str]):
    from cryptography import x509

    names = []
    for h in san_hosts(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_certificates(out: str | Path, hosts: list[str], days: int = 825) -> dict[str, Path]:
    """A consortium CA and a SuperLink certificate for ``hosts``.

    Args:
        out: folder to write ``ca.crt``, ``ca.key`` (0600), ``server.pem``, ``server.key`` (0600).
        hosts: the names and addresses SuperNodes use to reach the SuperLink
            (e.g. ``coordinator.example.org``, ``10.0.0.5``); the first is the subject.
            ``localhost`` and ``127.0.0.1`` are always added (:data:`LOOPBACK`).
        days: validity of the server certificate (the CA gets twice as long).

    Returns:
        ``{"ca-cert", "ca-key", "server-cert", "server-key"}`` paths.

    Raises:
        ValueError: without any host, or when ``out`` already holds a CA (remove it to
            start a new consortium; every site would need the new ``ca.crt``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("give at least one --host: the name or address sites connect to")
    out = Path(out)
    if (out / CA_KEY).exists():
        raise ValueError(
            f"{out / CA_KEY} exists: this folder already holds a consortium CA; remove it "
            "to make a new one (every site then needs the new ca.crt)"
        )
    now = dt.datetime.now(dt.timezone.utc)
    pem = serialization.Encoding.PEM
    private_format = serialization.PrivateFormat.PKCS8
    no_password = serialization.NoEncryption()

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedSynth consortium CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2 * days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return {
        "ca-cert": _write(out / CA_CERT, ca_cert.public_bytes(pem), private=False),
        "ca-key": _write(
            out / CA_KEY, ca_key.private_bytes(pem, private_format, no_password), private=True
        ),
        "server-cert": _write(out / SERVER_CERT, cert.public_bytes(pem), private=False),
        "server-key": _write(
            out / SERVER_KEY, key.private_bytes(pem, private_format, no_password), private=True
        ),
    }


def make_node_key(path: str | Path) -> Path:
    """A SuperNode authentication key pair: ``PATH.key`` (0600) and ``PATH.pub``.

    Args:
        path: where to write, without suffix (e.g. ``/etc/fedsynth/node``).

    Returns:
        The private key's path.

    Raises:
        ValueError: when the private key exists (a site keeps one identity; remove the
            file, and have the coordinator unregister the old key, to change it).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    private, public = path.with_name(path.name + ".key"), path.with_name(path.name + ".pub")
    if private.exists():
        raise ValueError(
            f"{private} exists: this site already has a SuperNode key; remove it (and have "
            "the coordinator unregister the old one) to make a new one"
        )
    key = ec.generate_private_key(ec.SECP384R1())
    ssh = serialization.Encoding.OpenSSH
    _write(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(public, key.public_key().public_bytes(ssh, serialization.PublicFormat.OpenSSH), False)
    return private
