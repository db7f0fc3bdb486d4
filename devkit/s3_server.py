"""A real S3-compatible server for the backup tests: the Versity S3 gateway (built from its Go module by
tools/build-versitygw.sh, cached by version) serving a temp folder on a free loopback port, with a root
access key of this run. It can be stopped and started again on the same port and folder (a store outage)."""
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from devkit import procs
from devkit.net import free_port

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def versitygw_binary() -> str:
    """The gateway's path; builds it the first time (about 3 minutes), as tools/toolchain.sh does."""
    out = subprocess.run(["bash", os.path.join(REPO_ROOT, "tools", "build-versitygw.sh")], check=True,
                         capture_output=True, text=True, timeout=1200).stdout
    return out.strip().splitlines()[-1]


@dataclass
class S3Server:
    binary: str
    folder: str
    port: int
    access_key_id: str = field(default_factory=lambda: "test" + secrets.token_hex(6))
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = "us-east-1"
    proc: Optional[subprocess.Popen] = None
    ca_file: str = ""  # set: it serves TLS with a certificate of its own CA (a private endpoint)
    tls: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"  # e.g. the local cluster's bridge address, for pods

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://{self.host}:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "ROOT_ACCESS_KEY": self.access_key_id, "ROOT_SECRET_KEY": self.secret_access_key}
        self.proc = procs.start([self.binary, "--port", f"{self.host}:{self.port}", *self.tls, "posix", self.folder],
                                os.path.join(os.path.dirname(self.folder), "versitygw.log"), env=env, append=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"versitygw did not serve on {self.endpoint}; see its log") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, verify=self.ca_file or True,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: Optional[str] = None) -> str:
        name = name or f"backups-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name


def start_s3_server(workdir: str, tls: bool = False, host: str = "127.0.0.1") -> S3Server:
    """With `tls`, HTTPS with a certificate for 127.0.0.1 from a CA of its own (`ca_file`); `host`: the
    address it listens on (a free port there)."""
    folder = os.path.join(workdir, "buckets")
    os.makedirs(folder, exist_ok=True)
    server = S3Server(versitygw_binary(), folder, free_port(), host=host)
    if tls:
        from infra.providers.tls import make_bundle

        bundle = make_bundle("s3", ["localhost"], ["127.0.0.1"], days=1)
        paths = {}
        for name in ("ca_pem", "cert_pem", "key_pem"):
            paths[name] = os.path.join(workdir, name.replace("_pem", ".pem"))
            with open(os.open(paths[name], os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(bundle[name])
        server.ca_file = paths["ca_pem"]
        server.tls = ["--cert", paths["cert_pem"], "--key", paths["key_pem"]]
    server.start()
    return server
