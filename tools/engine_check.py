"""What the stacks need of the container engine, checked before the toolchain says it is ready: a container
on a user network resolves another by its alias, `init: true` works, a port published on 127.0.0.1 answers.
A missing capability exits 1 naming it and how to fix it.

  python tools/engine_check.py IMAGE [--network NAME] [--stamp FILE]

IMAGE must have python3. --network uses an existing network (a test passes one created without DNS)
instead of a throwaway one. --stamp FILE (the toolchain's) skips the containers when FILE holds the key of
the last passed check, and records it after a pass: the key changes with the engine (its address and
version), the image's id, the host's installed packages (catatonit, netavark, aardvark-dns, iptables),
Podman's configuration files, a reboot and this script; any change runs the whole check again.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from typing import Optional

import docker
import requests

from infra.clients import engine_api

FIXES = {
    "network": "a container on a network does not start. On podman: install netavark and iptables (netavark "
               "runs iptables for every network)",
    "dns": "containers on a user network cannot resolve each other by alias. On podman: install netavark and "
           "aardvark-dns and set network_backend = \"netavark\" in containers.conf (tools/engine.sh does both); "
           "a network created with DNS disabled cannot serve the stacks",
    "init": "a container with init: true does not start. On podman: install catatonit (a recommended package "
            "that --no-install-recommends leaves out)",
    "port": "a port published on 127.0.0.1 does not answer from this machine. On podman: check that netavark "
            "(or slirp4netns/pasta for rootless) is installed and that nothing else holds the port",
}
SERVER = "import http.server as h; h.HTTPServer(('0.0.0.0', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
RESOLVE = "import socket, sys; socket.gethostbyname(sys.argv[1]); print('resolved')"


class Missing(Exception):
    def __init__(self, capability: str, detail: str):
        super().__init__(f"engine check failed: {FIXES[capability]} ({detail.strip()[-300:]})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return True
        except requests.RequestException:
            time.sleep(0.3)
    return False


def check(engine: docker.DockerClient, image: str, network: Optional[str] = None) -> None:
    """Raises Missing naming the first capability the engine lacks; removes everything it made."""
    tag = f"engine-check-{uuid.uuid4().hex[:8]}"
    net = engine.networks.get(network) if network else engine.networks.create(tag, driver="bridge")
    try:
        port = _free_port()
        try:
            server = engine.containers.create(image, ["python3", "-c", SERVER], name=f"{tag}-peer",
                                              ports={"8080/tcp": ("127.0.0.1", port)})
            net.connect(server, aliases=["engine-check-peer"])
            server.start()
        except docker.errors.APIError as e:
            raise Missing("network", str(e)) from None
        if not _answers(f"http://127.0.0.1:{port}/", 20):
            raise Missing("port", server.logs(tail=5).decode(errors="replace"))
        try:
            out = engine.containers.run(image, ["python3", "-c", RESOLVE, "engine-check-peer"], name=f"{tag}-client",
                                        network=net.name, init=True, stdout=True, stderr=True)
        except docker.errors.ContainerError as e:
            raise Missing("dns", (e.stderr or b"").decode(errors="replace")) from None
        except docker.errors.APIError as e:
            raise Missing("init" if "init" in str(e) else "network", str(e)) from None
        if b"resolved" not in out:
            raise Missing("dns", out.decode(errors="replace"))
    finally:
        # By name: a container whose start failed is still there.
        for c in engine.containers.list(all=True, filters={"name": tag}):
            c.remove(force=True)
        if not network:
            net.remove()


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


def stamp_key(engine: docker.DockerClient, image: str, network: Optional[str] = None) -> str:
    """What the check's outcome depends on, as one digest ("" when the image is absent: the check says so)."""
    try:
        image_id = engine.images.get(image).id
    except docker.errors.ImageNotFound:
        return ""
    ping = engine.api.get(engine.api.base_url + "/_ping").headers
    return hashlib.sha256(json.dumps({
        "engine": os.environ.get("DOCKER_HOST", ""),  # engine_api.client()'s address
        "server": [ping.get(h, "") for h in ("Server", "Api-Version", "Libpod-Api-Version", "Libpod-Buildah-Version")],
        "image": image_id,
        "network": network or "",
        "boot": _file_digest("/proc/sys/kernel/random/boot_id"),
        "packages": _file_digest("/var/lib/dpkg/status"),
        "config": [_file_digest(os.environ.get(v, "")) for v in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")],
        "check": _file_digest(os.path.abspath(__file__)),
    }, sort_keys=True).encode()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--network", help="an existing network to check instead of a throwaway one")
    ap.add_argument("--stamp", help="a file recording the last passed check's key (see above)")
    args = ap.parse_args()
    engine = engine_api.client(timeout=60)
    key = stamp_key(engine, args.image, args.network) if args.stamp else ""
    if key:
        try:
            with open(args.stamp) as f:
                if f.read().strip() == key:
                    print("engine: container DNS by alias, init, published loopback ports: ok "
                          "(passed before; the engine, its packages, the image and this check are unchanged)")
                    return 0
        except OSError:
            pass
        try:
            os.remove(args.stamp)  # a failed check leaves no stamp behind
        except OSError:
            pass
    try:
        check(engine, args.image, args.network)
    except Missing as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if key:
        with open(args.stamp, "w") as f:
            f.write(key + "\n")
    print("engine: container DNS by alias, init, published loopback ports: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
