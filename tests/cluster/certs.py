"""A throwaway certificate authority for the secured test cluster (Python ``cryptography``).

One CA signs a node certificate (subject CN=streamlake-broker, SAN 127.0.0.1 and localhost)
and an operator's client certificate (CN=streamlake-admin). Keys are PKCS#8 PEM without a
passphrase: they live only in the test's temporary directory and die with it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NODE_CN = "streamlake-broker"
ADMIN_CN = "streamlake-admin"


@dataclass(frozen=True)
class TestPki:
    """Paths of the CA certificate and the PEM keystores (key, then certificate chain)."""

    __test__ = False

    ca_pem: Path
    node_pem: Path
    admin_pem: Path

    @property
    def node_principal(self) -> str:
        return f"User:CN={NODE_CN}"

    @property
    def admin_principal(self) -> str:
        return f"User:CN={ADMIN_CN}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_test_pki(directory: Path) -> TestPki:
    """Write a CA and two leaf keystores under *directory*; valid for one day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("streamlake-test-ca")).issuer_name(_name("streamlake-test-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, path: Path) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            # Key identifiers: Python 3.13's default TLS context verifies strictly (VERIFY_X509_STRICT)
            # and refuses a chain without them ("Missing Authority Key Identifier").
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        path.write_bytes(_key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
                         + ca_cert.public_bytes(serialization.Encoding.PEM))
        path.chmod(0o600)
        return path

    return TestPki(ca_pem, leaf(NODE_CN, directory / "node.pem"), leaf(ADMIN_CN, directory / "admin.pem"))
