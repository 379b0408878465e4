"""Certificates and keys for the local control plane.

One throw-away CA signs the apiserver's serving certificate and a client certificate per identity
(admin in system:masters, the controller-manager, the scheduler, kwok); a separate RSA key signs
service-account tokens. Everything is written as PEM files into the cluster's work dir.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ClientCert", "Pki", "generate_pki"]

_VALIDITY = dt.timedelta(days=365)
_APISERVER_SANS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_APISERVER_IPS = ("127.0.0.1", "10.0.0.1")


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of everything generate_pki wrote."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    clients: dict[str, ClientCert]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def generate_pki(*, directory: Path, clients: dict[str, tuple[str, str | None]]) -> Pki:
    """Write a CA, apiserver serving cert, SA signing key and client certs into `directory`.

    `clients` maps a file stem to (common name, organization), e.g.
    {"admin": ("xynergy-admin", "system:masters")}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("xynergy-dev-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    pki_paths: dict[str, Path] = {
        "ca_cert": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "serving_cert": directory / "apiserver.crt",
        "serving_key": directory / "apiserver.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    pki_paths["ca_cert"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki_paths["ca_key"], ca_key)

    def issue(
        *, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(subject, ca_name, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in _APISERVER_SANS]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _APISERVER_IPS]
    serving, serving_key = issue(
        subject=_name("kube-apiserver"), usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans
    )
    pki_paths["serving_cert"].write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    _write_key(pki_paths["serving_key"], serving_key)

    sa_key = ec.generate_private_key(ec.SECP256R1())  # ES256 tokens; much faster than RSA
    _write_key(pki_paths["sa_key"], sa_key)
    pki_paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    written: dict[str, ClientCert] = {}
    for stem, (common_name, org) in clients.items():
        cert, key = issue(
            subject=_name(common_name, org), usage=ExtendedKeyUsageOID.CLIENT_AUTH, sans=None
        )
        paths = ClientCert(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
        paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(paths.key, key)
        written[stem] = paths
    return Pki(clients=written, **pki_paths)
