"""Backups in an S3-compatible bucket: encrypted before they leave, verified after they land, pruned by
tiers. Used by the snapshot agent (infra/snapshot_agent.py) and the restore check (infra/restore_check.py);
copied beside them into their container, so it imports nothing of the project (boto3 and cryptography
only, both in the service image).

Object names: <prefix><kind>/<stamp><suffix>.enc, `stamp` the UTC time of the backup
(20261207T161500.123456Z), so names sort by age and a listing alone says what to prune.

Encryption: AES-256-GCM (cryptography's AESGCM) with a 32-byte key that lives in the stack's secrets
only, never in the bucket. Each object is MAGIC + a random 96-bit nonce + ciphertext-and-tag, with the
object's own name as associated data: a blob renamed or moved to another slot fails to decrypt.
"""
import base64
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

MAGIC = b"VEB1"  # format version 1
NONCE_BYTES = 12
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
ENC_SUFFIX = ".enc"
# Default tiers: (period in seconds, how many of the newest periods keep their newest backup).
HOUR, DAY, WEEK = 3600, 86400, 7 * 86400


@dataclass(frozen=True)
class StoreSettings:
    bucket: str
    prefix: str = ""  # ends with "/" when not empty
    endpoint: str = ""  # empty: the provider's default (AWS)
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    ca_file: str = ""  # PEM of a private endpoint's CA; empty: the system's

    @classmethod
    def from_files(cls, config_file: str, credentials_file: str) -> "StoreSettings":
        """`config_file`: JSON with bucket, prefix, endpoint, region, ca_file; `credentials_file`: JSON with
        access_key_id and secret_access_key (a secret file of its own, mode 0400)."""
        with open(config_file) as f:
            cfg = json.load(f)
        with open(credentials_file) as f:
            creds = json.load(f)
        return cls(bucket=cfg["bucket"], prefix=cfg.get("prefix", ""), endpoint=cfg.get("endpoint", ""),
                   region=cfg.get("region", "us-east-1"), ca_file=cfg.get("ca_file", ""),
                   access_key_id=creds["access_key_id"], secret_access_key=creds["secret_access_key"])


def client(settings: StoreSettings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=settings.endpoint or None, region_name=settings.region,
        aws_access_key_id=settings.access_key_id or None, aws_secret_access_key=settings.secret_access_key or None,
        verify=settings.ca_file or True,
        # Path-style: a private endpoint has no wildcard DNS for bucket subdomains. Few retries: a run that
        # cannot reach the store fails in seconds and says so (the next run tries again).
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"},
                      connect_timeout=5, read_timeout=60))


def load_key(path: str) -> bytes:
    """The encryption key: a file holding 32 bytes in base64."""
    with open(path) as f:
        return parse_key(f.read())


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("the backup encryption key is not base64") from None
    if len(key) != 32:
        raise ValueError(f"the backup encryption key must be 32 bytes (base64 of 32 random bytes), not {len(key)}")
    return key


def encrypt(key: bytes, name: str, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, name.encode())


def decrypt(key: bytes, name: str, blob: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC):
        raise ValueError(f"{name} is not an encrypted backup of this format")
    nonce = blob[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES:], name.encode())


def stamp(when: Optional[datetime.datetime] = None) -> str:
    return (when or datetime.datetime.now(datetime.timezone.utc)).strftime(STAMP_FORMAT)


def stamp_time(name: str) -> Optional[datetime.datetime]:
    """The backup time in an object's name, or None for a name that is not one of ours."""
    base = name.rsplit("/", 1)[-1]
    try:
        return datetime.datetime.strptime(base[:len("20261207T161500.123456Z")], STAMP_FORMAT).replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def object_name(settings: StoreSettings, kind: str, when_stamp: str, suffix: str) -> str:
    return f"{settings.prefix}{kind}/{when_stamp}{suffix}{ENC_SUFFIX}"


def upload_verified(s3: Any, settings: StoreSettings, name: str, blob: bytes) -> dict:
    """Puts `blob` and reads it back: the size the store reports and the SHA-256 of the bytes it returns
    must both match, else ValueError (the run fails; a mismatching object is removed)."""
    digest = hashlib.sha256(blob).hexdigest()
    s3.put_object(Bucket=settings.bucket, Key=name, Body=blob, ContentType="application/octet-stream",
                  Metadata={"sha256": digest})
    head = s3.head_object(Bucket=settings.bucket, Key=name)
    got = s3.get_object(Bucket=settings.bucket, Key=name)["Body"].read()
    problems = []
    if head["ContentLength"] != len(blob):
        problems.append(f"size {head['ContentLength']} != {len(blob)}")
    if head.get("Metadata", {}).get("sha256") != digest or hashlib.sha256(got).hexdigest() != digest:
        problems.append("checksum mismatch")
    if problems:
        s3.delete_object(Bucket=settings.bucket, Key=name)
        raise ValueError(f"upload of {name} did not verify: {', '.join(problems)}")
    return {"object": name, "bytes": len(blob), "sha256": digest}


def list_backups(s3: Any, settings: StoreSettings, kind: str) -> list[str]:
    """Names of this kind's backups, oldest first."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket,
                                                             Prefix=f"{settings.prefix}{kind}/"):
        names += [o["Key"] for o in page.get("Contents", []) if stamp_time(o["Key"]) and o["Key"].endswith(ENC_SUFFIX)]
    return sorted(names, key=lambda n: n.rsplit("/", 1)[-1])


def to_keep(names: Iterable[str], tiers: Iterable[tuple[int, int]]) -> set[str]:
    """Grandfather-father-son: for each tier (period seconds, count), the newest backup of each of the
    `count` newest periods that have one. The newest backup is always kept."""
    dated = sorted(((when, n) for n in names if (when := stamp_time(n)) is not None), reverse=True)
    keep = {dated[0][1]} if dated else set()
    for period, count in tiers:
        seen: set[int] = set()
        for when, name in dated:
            slot = int(when.timestamp()) // period
            if slot not in seen and len(seen) < count:
                seen.add(slot)
                keep.add(name)
    return keep


def prune(s3: Any, settings: StoreSettings, kind: str, tiers: Iterable[tuple[int, int]]) -> list[str]:
    """Deletes this kind's backups that no tier keeps; returns their names."""
    names = list_backups(s3, settings, kind)
    keep = to_keep(names, tiers)
    gone = [n for n in names if n not in keep]
    for n in gone:
        s3.delete_object(Bucket=settings.bucket, Key=n)
    return gone


def fetch(s3: Any, settings: StoreSettings, key: bytes, name: str) -> bytes:
    """An object's plaintext (decryption authenticates it)."""
    return decrypt(key, name, s3.get_object(Bucket=settings.bucket, Key=name)["Body"].read())


def parse_tiers(specs: Iterable[str]) -> list[tuple[int, int]]:
    """["3600:24", "86400:14"] -> [(3600, 24), (86400, 14)]; a count of 0 turns a tier off."""
    tiers = []
    for spec in specs:
        period, _, count = spec.partition(":")
        if not (period.isdigit() and count.isdigit() and int(period) > 0):
            raise ValueError(f"a tier is PERIOD_SECONDS:COUNT, not {spec!r}")
        tiers.append((int(period), int(count)))
    return tiers
