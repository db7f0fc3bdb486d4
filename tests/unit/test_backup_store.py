"""The backups' object-store logic without a server: tiers, encryption, read-back verification. The same
behaviours run against a real S3 server in tests/integration/test_snapshots.py."""
import base64
import datetime
import io

import pytest
from cryptography.exceptions import InvalidTag

from infra.agents import backup_store as bs

pytestmark = pytest.mark.unit
T0 = datetime.datetime(2026, 12, 7, 0, 0, tzinfo=datetime.timezone.utc)


def _name(hours: float) -> str:
    return f"p/snapshots/{bs.stamp(T0 + datetime.timedelta(hours=hours))}.snap.enc"


def test_tiers_keep_the_newest_of_each_period():
    # Hourly backups for 10 days from Monday 2026-12-07 00:00 UTC.
    names = [_name(h) for h in range(240)]
    keep = bs.to_keep(names, [(bs.HOUR, 24), (bs.DAY, 7), (bs.WEEK, 2)])
    hourly = set(names[-24:])
    daily = {_name(d * 24 + 23) for d in range(3, 10)}  # 23:00 of each of the 7 newest days
    # Weeks count from the epoch (a Thursday): Thursday 2026-12-10 00:00 (hour 72) starts the newest one,
    # so the other week's newest backup is hour 71.
    weekly = {_name(71), _name(239)}
    assert keep == hourly | daily | weekly
    assert len(keep) == 31


def test_a_tier_of_zero_and_one_backup():
    assert bs.to_keep([_name(0)], [(bs.HOUR, 0)]) == {_name(0)}  # the newest always stays
    assert bs.to_keep([], [(bs.HOUR, 3)]) == set()
    assert bs.to_keep(["p/snapshots/not-ours.snap.enc", _name(1)], [(bs.HOUR, 5)]) == {_name(1)}


def test_encryption_binds_key_and_name():
    key = b"k" * 32
    blob = bs.encrypt(key, "a/x.enc", b"secret metadata")
    assert blob.startswith(bs.MAGIC) and b"secret metadata" not in blob
    assert bs.decrypt(key, "a/x.enc", blob) == b"secret metadata"
    with pytest.raises(InvalidTag):
        bs.decrypt(b"j" * 32, "a/x.enc", blob)
    with pytest.raises(InvalidTag):
        bs.decrypt(key, "a/y.enc", blob)  # moved to another name
    with pytest.raises(ValueError, match="not an encrypted backup"):
        bs.decrypt(key, "a/x.enc", b"plain")
    assert bs.encrypt(key, "n", b"same") != bs.encrypt(key, "n", b"same")  # a fresh nonce each time


@pytest.mark.parametrize("text,message", [("not base64!", "not base64"),
                                          (base64.b64encode(b"short").decode(), "must be 32 bytes")])
def test_bad_keys_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        bs.parse_key(text)


def test_tier_specs():
    assert bs.parse_tiers(["3600:24", "86400:0"]) == [(3600, 24), (86400, 0)]
    with pytest.raises(ValueError, match="PERIOD_SECONDS:COUNT"):
        bs.parse_tiers(["hourly"])


class _LyingStore:
    """Answers a put with a different size on read-back (what a truncating proxy would do)."""

    def __init__(self):
        self.deleted = []

    def put_object(self, **kw):
        self.body = kw["Body"]

    def head_object(self, **kw):
        return {"ContentLength": len(self.body) - 1, "Metadata": {}}

    def get_object(self, **kw):
        return {"Body": io.BytesIO(self.body[:-1])}

    def delete_object(self, **kw):
        self.deleted.append(kw["Key"])


def test_an_upload_that_does_not_read_back_fails_and_is_removed():
    s3 = _LyingStore()
    with pytest.raises(ValueError, match="did not verify: size 9 != 10, checksum mismatch"):
        bs.upload_verified(s3, bs.StoreSettings(bucket="b"), "p/x.enc", b"0123456789")
    assert s3.deleted == ["p/x.enc"]
