"""The SuperLink certificate names what its clients connect to, its own SuperExec included."""

from __future__ import annotations

from cryptography import x509

from deploy.local.certs import make_certificates


def _names(pem: bytes) -> list[str]:
    """DNS names as they are, addresses as ``ip:ADDRESS``."""
    san = (
        x509.load_pem_x509_certificate(pem)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    ips = [f"ip:{ip}" for ip in san.get_values_for_type(x509.IPAddress)]
    return sorted(san.get_values_for_type(x509.DNSName) + ips)


def test_the_loopback_is_always_on_the_superlink_certificate(tmp_path):
    """Flower's SuperExec reaches its SuperLink on 127.0.0.1: without it every run fails."""
    paths = make_certificates(tmp_path / "a", ["coordinator.example.org", "10.0.0.5"])
    assert _names(paths["server-cert"].read_bytes()) == [
        "coordinator.example.org",
        "ip:10.0.0.5",
        "ip:127.0.0.1",
        "localhost",
    ]
    # given already: listed once
    paths = make_certificates(tmp_path / "b", ["localhost", "127.0.0.1", "superlink"])
    assert _names(paths["server-cert"].read_bytes()) == ["ip:127.0.0.1", "localhost", "superlink"]
