"""A throwaway PKI for tests: one CA, then server and client certificates it signs (PEM files).

    pki = TestPki.create(tmp_path / "pki")        # ca.pem (+ ca.key)
    server = pki.issue("server", server=True)     # SANs 127.0.0.1, ::1 and localhost
    client = pki.issue("adder", client=True)      # CN=adder, clientAuth
    server.cert, server.key, server.chain         # cert.pem, key.pem (0600), key + cert in one file

Keys are EC P-256, unencrypted PKCS#8 (Kafka's PEM key store and gRPC both read that), valid for a
day. `issue(..., ca=other)` signs with another CA (a certificate the real CA never issued).
Uses `cryptography`, which the development venv has through the controller lock (ansible-core).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)
LOOPBACK_NAMES: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    name: str
    cert: Path  # the certificate (PEM)
    key: Path  # its private key (PEM, PKCS#8, 0600)
    chain: Path  # key then certificate in one file (Kafka's PEM key store)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


@dataclass(frozen=True, slots=True)
class TestPki:
    directory: Path
    ca_cert: Path
    ca_key: Path

    __test__ = False  # not a pytest test class

    @classmethod
    def create(cls, directory: Path, name: str = "sumflow-test-ca") -> TestPki:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca_cert, ca_key = directory / f"{name}.pem", directory / f"{name}.key"
        ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(ca_key, _key_pem(key))
        return cls(directory, ca_cert, ca_key)

    def issue(
        self,
        name: str,
        *,
        server: bool = False,
        client: bool = False,
        names: tuple[str, ...] = LOOPBACK_NAMES,
    ) -> IssuedCert:
        """A certificate with CN=`name`, for server and/or client authentication, signed by this CA."""
        if not server and not client:
            raise ValueError("a certificate for server or client authentication (or both)")
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(_san(names), critical=False)
        cert_pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        cert_path, key_path, chain_path = (
            self.directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".chain.pem")
        )
        cert_path.write_bytes(cert_pem)
        _write_private(key_path, _key_pem(key))
        _write_private(chain_path, _key_pem(key) + cert_pem)
        return IssuedCert(name, cert_path, key_path, chain_path)


__all__ = ["LOOPBACK_NAMES", "IssuedCert", "TestPki"]
