"""A private CA and one server certificate (serverAuth + clientAuth) for a Vault cluster's nodes.
The private keys are secret outputs: encrypted in state, never shown.

With `renew_before` set, every `preview`/`up` looks at the certificate's expiry: within that window of it,
the update issues a new server certificate from the same CA (consumers that trust the CA see no change);
a CA within the window of its own expiry is made anew, with its certificate."""
import datetime
import ipaddress
from typing import Any, Optional

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.dynamic import CreateResult, DiffResult, Resource, UpdateResult

from .base import ManagedProvider, plain


def _pem_key(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_ca(common_name: str, seconds: int) -> tuple[x509.Certificate, Any]:
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(seconds=seconds)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    return ca, ca_key


def make_bundle(common_name: str, dns_names: list[str], ip_addresses: list[str], days: int,
                *, seconds: int = 0, ca: Optional[tuple[x509.Certificate, Any]] = None) -> dict[str, str]:
    """A server certificate valid `days` (or `seconds`), signed by `ca` (certificate, key) or by a new CA
    valid as long; `ca_key_pem` is the CA's key."""
    lifetime = seconds or days * 86400
    ca_cert, ca_key = ca or make_ca(common_name, lifetime)
    ca_name = ca_cert.subject
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(seconds=lifetime)
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
        "ca_pem": ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        "cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "key_pem": _pem_key(key),
        "ca_key_pem": _pem_key(ca_key),
    }


def seconds_left(pem: Optional[str]) -> float:
    """Seconds until the certificate expires (negative: expired); 0 when there is none."""
    if not pem:
        return 0.0
    cert = x509.load_pem_x509_certificate(pem.encode())
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


class _TlsBundleProvider(ManagedProvider):
    managed = ("common_name", "dns_names", "ip_addresses", "days", "valid_seconds", "ca_days", "renew_before")
    replace_on = ("common_name", "dns_names", "ip_addresses")

    def _issue(self, p: dict[str, Any], ca: Optional[tuple[x509.Certificate, Any]] = None) -> dict[str, str]:
        if ca is None and p.get("ca_days"):  # a CA that outlives its certificates, renewed on its own
            ca = make_ca(p["common_name"], int(p["ca_days"]) * 86400)
        return make_bundle(p["common_name"], p["dns_names"], p["ip_addresses"], p["days"],
                           seconds=int(p.get("valid_seconds") or 0), ca=ca)

    def create(self, props: dict[str, Any]) -> CreateResult:
        bundle = self._issue(plain(props))
        return CreateResult(x509.load_pem_x509_certificate(bundle["cert_pem"].encode()).serial_number.__format__("x"),
                            {**props, **bundle})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        window = int(plain(news.get("renew_before") or 0))
        if window and not result.changes and seconds_left(olds.get("cert_pem")) < window:
            result.changes = True  # the update renews it
        return result

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        p, window = plain(news), int(plain(news.get("renew_before") or 0))
        ca = None
        if olds.get("ca_key_pem") and seconds_left(olds.get("ca_pem")) > max(window, 1):
            ca = (x509.load_pem_x509_certificate(olds["ca_pem"].encode()),
                  serialization.load_pem_private_key(olds["ca_key_pem"].encode(), password=None))
        return UpdateResult({**news, **self._issue(p, ca)})


class TlsBundle(Resource, module="tls", name="TlsBundle"):
    """`ca_pem` and `cert_pem` are public; `key_pem` (and the CA's key) are secret outputs.

    `valid_seconds` overrides `days` (a test's time-lapse); `ca_days`: the CA's own life (0: as long as the
    certificate); `renew_before` (seconds, 0: never): how long before its expiry `up` renews the certificate."""

    ca_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    def __init__(self, name: str, *, common_name: str, dns_names: pulumi.Input[list[str]],
                 ip_addresses: Optional[list[str]] = None, days: int = 365, valid_seconds: int = 0,
                 ca_days: int = 0, renew_before: int = 0, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["key_pem", "ca_key_pem"]))
        super().__init__(_TlsBundleProvider(), name, {
            "common_name": common_name, "dns_names": dns_names, "ip_addresses": ip_addresses or [], "days": days,
            "valid_seconds": valid_seconds, "ca_days": ca_days, "renew_before": renew_before,
            "ca_pem": None, "cert_pem": None, "key_pem": None, "ca_key_pem": None,
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
