"""A private CA and one server certificate (serverAuth + clientAuth) for a Vault cluster's nodes.
The private keys are secret outputs: encrypted in state, never shown."""
import datetime
import ipaddress
from typing import Any, Optional

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.dynamic import CreateResult, Resource

from .base import ManagedProvider, plain


def _pem_key(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_bundle(common_name: str, dns_names: list[str], ip_addresses: list[str], days: int) -> dict[str, str]:
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return {
        "ca_pem": ca.public_bytes(serialization.Encoding.PEM).decode(),
        "cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "key_pem": _pem_key(key),
    }


class _TlsBundleProvider(ManagedProvider):
    managed = ("common_name", "dns_names", "ip_addresses", "days")
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = plain(props)
        bundle = make_bundle(p["common_name"], p["dns_names"], p["ip_addresses"], p["days"])
        return CreateResult(x509.load_pem_x509_certificate(bundle["cert_pem"].encode()).serial_number.__format__("x"),
                            {**props, **bundle})


class TlsBundle(Resource, module="tls", name="TlsBundle"):
    """`ca_pem` and `cert_pem` are public; `key_pem` is a secret output."""

    ca_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    def __init__(self, name: str, *, common_name: str, dns_names: pulumi.Input[list[str]],
                 ip_addresses: Optional[list[str]] = None, days: int = 365,
                 opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["key_pem"]))
        super().__init__(_TlsBundleProvider(), name, {
            "common_name": common_name, "dns_names": dns_names, "ip_addresses": ip_addresses or [], "days": days,
            "ca_pem": None, "cert_pem": None, "key_pem": None,
        }, opts)


def make_signing_key() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return {"key_pem": _pem_key(key), "public_pem": key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}


class _SigningKeyProvider(ManagedProvider):
    managed = ("algorithm",)
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        key = make_signing_key()
        der = serialization.load_pem_public_key(key["public_pem"].encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return CreateResult(hashes_hex(der), {**props, **key})


def hashes_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()[:16]


class SigningKey(Resource, module="tls", name="SigningKey"):
    """An ECDSA P-256 key pair (ES256) for signing JWTs: `public_pem` is public, `key_pem` a secret output."""

    public_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    def __init__(self, name: str, *, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["key_pem"]))
        super().__init__(_SigningKeyProvider(), name, {"algorithm": "ES256", "public_pem": None, "key_pem": None},
                         opts)
