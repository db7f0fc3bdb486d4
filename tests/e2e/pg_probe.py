"""A job's PostgreSQL client with nothing but Python's standard library (the service image carries no psql,
and a job's sandbox sees only /usr): logs in as PGUSER/PGPASSWORD (to PGHOST, PGDATABASE: by default the dev stack's
postgres, app) by SCRAM-SHA-256,
runs `select current_user` and prints the answer (the minted login: the job's output shows it redacted), then
stays for argv[1] seconds (the test sees the login in pg_roles meanwhile)."""
import base64
import hashlib
import hmac
import os
import socket
import struct
import sys
import time


def msg(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


def recv(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit("postgres closed the connection")
        data += chunk
    return data


def read(s):
    head = recv(s, 5)
    body = recv(s, struct.unpack("!I", head[1:])[0] - 4)
    if head[:1] == b"E":
        raise SystemExit("postgres error: " + body.decode(errors="replace"))
    return head[:1], body


def main():
    user, password = os.environ["PGUSER"], os.environ["PGPASSWORD"]
    s = socket.create_connection((os.environ.get("PGHOST", "postgres"), 5432), timeout=10)
    database = os.environ.get("PGDATABASE", "app")
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    s.sendall(struct.pack("!II", len(params) + 8, 196608) + params)
    kind, body = read(s)
    assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 10, "no SCRAM offered"
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    s.sendall(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
    kind, body = read(s)
    server_first = body[4:].decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    s.sendall(msg(b"p", f"{without_proof},p={proof}".encode()))
    while read(s)[0] != b"Z":  # SASL final, AuthenticationOk, parameters, key data, ReadyForQuery
        pass
    s.sendall(msg(b"Q", b"select current_user\0"))
    answer = None
    while True:
        kind, body = read(s)
        if kind == b"D":
            n = struct.unpack("!I", body[2:6])[0]
            answer = body[6:6 + n].decode()
        if kind == b"Z":
            break
    s.sendall(msg(b"X", b""))
    print("current_user:", answer, flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)  # the login stays while the job runs


main()
