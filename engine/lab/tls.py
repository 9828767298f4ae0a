"""Throw-away TLS certificates for the loopback lab (``ntd demo``, ``ntd bench iccam``).

A lab CA signs one server certificate (``127.0.0.1`` and ``localhost``) and one client
certificate, the way INHOPE issues an ICCAM client certificate to a hotline. Keys are generated
fresh each time, written into the given folder (they protect nothing outside the lab) and never
reused. Tests generate theirs with ``trustme`` instead.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LabTLS:
    """Paths of the lab's PEM files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context that requires a client certificate signed by the lab CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_cert))
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ntd loopback lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
           key_path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


def make_lab_tls(folder: str | Path) -> LabTLS:
    """Generate a CA, a server and a client certificate into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ntd lab CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage: x509.ObjectIdentifier,
             names: list[x509.GeneralName]) -> tuple[ec.EllipticCurvePrivateKey,
                                                     x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                               x509.DNSName("localhost")])
    client_key, client = leaf("ntd lab hotline", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    tls = LabTLS(ca_cert=out / "lab-ca.pem", server_cert=out / "iccam-server.pem",
                 server_key=out / "iccam-server.key", client_cert=out / "hotline-client.pem",
                 client_key=out / "hotline-client.key")
    tls.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write(tls.server_cert, server_key, server, tls.server_key)
    _write(tls.client_cert, client_key, client, tls.client_key)
    return tls
