"""Container-engine resources over the Docker Engine API (docker SDK).

They work against Docker and against Podman's Docker-compatible socket. `docker_host` is an input so a
stack can target any engine (default: DOCKER_HOST of the `pulumi up` environment).
"""
import hashlib
import io
import ipaddress
import os
import tarfile
import time
import warnings
from typing import Any, Optional, Sequence

import docker
import pulumi
import requests
from docker.errors import NotFound
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from infra.clients import engine_api

from .base import ManagedProvider, plain


def engine(props: dict[str, Any]) -> docker.DockerClient:
    # Its API version from /_ping: the SDK's negotiation asks Podman's /version, 0.5-2 s per operation.
    return engine_api.client(props["docker_host"], timeout=300)


def default_docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def container_cidrs(net: Any) -> list[str]:
    """Where the network's containers come from, as a server on it sees them: its IPv4 subnets less their
    gateway, the address the host's connections (published ports, the host's own) arrive from."""
    cidrs: list[str] = []
    for c in (net.attrs.get("IPAM") or {}).get("Config") or []:
        if not c.get("Subnet") or ":" in c["Subnet"]:
            continue
        subnet = ipaddress.IPv4Network(c["Subnet"], strict=False)
        gateway = c.get("Gateway") or str(next(subnet.hosts()))
        # Single addresses left out (the network's own address, never a container's): Vault spells a /32
        # differently in each field it is read back from, which a refresh would see as drift.
        cidrs += sorted(str(n) for n in subnet.address_exclude(ipaddress.IPv4Network(f"{gateway.split('/')[0]}/32"))
                        if n.prefixlen < 32)
    return cidrs


class _NetworkProvider(ManagedProvider):
    managed = ("name", "internal", "labels", "docker_host")
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = engine(props)
        net = client.networks.create(
            props["name"], driver="bridge", internal=bool(props["internal"]), labels=props["labels"] or {}
        )
        return CreateResult(net.id, {**props, "container_cidrs": container_cidrs(client.networks.get(net.id))})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            net = engine(props).networks.get(id_)
        except NotFound:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, "container_cidrs": container_cidrs(net)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            engine(props).networks.get(id_).remove()
        except NotFound:
            pass


class Network(Resource, module="docker", name="Network"):
    """`container_cidrs`: where its containers come from (CIDRs to bind their credentials to)."""

    container_cidrs: pulumi.Output[list]

    def __init__(self, name: str, *, network_name: str, internal: bool = False,
                 labels: Optional[dict[str, str]] = None, docker_host: Optional[str] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_NetworkProvider(), name, {
            "name": network_name, "internal": internal, "labels": labels or {},
            "docker_host": docker_host or default_docker_host(), "container_cidrs": None,
        }, opts)


class _VolumeProvider(ManagedProvider):
    managed = ("name", "labels", "docker_host")
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        vol = engine(props).volumes.create(props["name"], labels=props["labels"] or {})
        return CreateResult(vol.name, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            engine(props).volumes.get(id_)
        except NotFound:
            return ReadResult(None, {})
        return ReadResult(id_, dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            engine(props).volumes.get(id_).remove(force=True)
        except NotFound:
            pass


class Volume(Resource, module="docker", name="Volume"):
    def __init__(self, name: str, *, volume_name: str, labels: Optional[dict[str, str]] = None,
                 docker_host: Optional[str] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_VolumeProvider(), name, {
            "name": volume_name, "labels": labels or {}, "docker_host": docker_host or default_docker_host(),
        }, opts)


def context_digest(path: str) -> str:
    """A digest of every file under a build context, so an edited file rebuilds the image."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        # Pruned and sorted in place, while the walk can still see it: caches never count, the order is fixed.
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".pytest_cache"))
        for f in sorted(files):
            full = os.path.join(root, f)
            h.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


class _ImageProvider(ManagedProvider):
    managed = ("tag", "context", "dockerfile", "build_args", "context_digest", "docker_host")
    # Rebuilt (replaced) when the inputs change; the image id changes with it.
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        # The legacy builder: Podman's API has no BuildKit session endpoint.
        image, _ = engine(props).images.build(
            path=props["context"], dockerfile=props["dockerfile"] or "Dockerfile", tag=props["tag"],
            buildargs=props["build_args"] or {}, rm=True, forcerm=True, pull=False,
        )
        return CreateResult(props["tag"], {**props, "image_id": image.id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            image = engine(props).images.get(id_)
        except NotFound:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, "image_id": image.id})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            engine(props).images.remove(id_, noprune=False)
        except NotFound:
            pass


class Image(Resource, module="docker", name="Image"):
    """An image built on the engine from a local context; rebuilt when any file in it changes."""

    image_id: pulumi.Output[str]

    def __init__(self, name: str, *, tag: str, context: str, dockerfile: str = "Dockerfile",
                 build_args: Optional[dict[str, str]] = None, digest_paths: Optional[list[str]] = None,
                 docker_host: Optional[str] = None, opts: Optional[pulumi.ResourceOptions] = None):
        """`digest_paths`: the parts of the context whose content decides a rebuild (default: all)."""
        digest = hashlib.sha256("".join(context_digest(os.path.join(context, p)) for p in (digest_paths or ["."]))
                                .encode()).hexdigest()
        super().__init__(_ImageProvider(), name, {
            "tag": tag, "context": os.path.abspath(context), "dockerfile": dockerfile,
            "build_args": build_args or {}, "context_digest": digest,
            "docker_host": docker_host or default_docker_host(), "image_id": None,
        }, opts)


CONTAINER_INPUTS = (
    "name", "image", "command", "entrypoint", "env", "ports", "networks", "volumes", "user",
    "read_only", "tmpfs", "labels", "restart", "cap_drop", "cap_add", "security_opt", "init", "mem_limit",
    "docker_host", "wait_http_path", "wait_https", "files", "wait_log",
)
# Inputs that change a running container in place: which files may be rewritten, and the signal that
# makes its process read them again.
RELOAD_INPUTS = ("reloadable_files", "reload_signal")


class _ContainerProvider(ManagedProvider):
    managed = CONTAINER_INPUTS + RELOAD_INPUTS
    replace_on = CONTAINER_INPUTS  # a container's configuration is immutable, but for reloadable files

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        if "files" in (result.replaces or []) and _only_reloadable_changed(olds, news):
            # A renewed certificate: written into the running container, which reloads it (no restart).
            result.replaces = [k for k in result.replaces or [] if k != "files"]
            result.delete_before_replace = bool(result.replaces)
        return result

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = engine(props)
        networks = props["networks"] or []
        kwargs: dict[str, Any] = dict(
            image=props["image"], name=props["name"],
            command=props["command"] or None, entrypoint=props["entrypoint"] or None,
            environment=props["env"] or {}, user=props["user"] or None,
            read_only=bool(props["read_only"]), tmpfs=props["tmpfs"] or None,
            labels=props["labels"] or {}, cap_drop=props["cap_drop"] or None, cap_add=props.get("cap_add") or None,
            security_opt=props["security_opt"] or None, init=bool(props["init"]),
            mem_limit=props["mem_limit"] or None,
            restart_policy={"Name": props["restart"]} if props["restart"] else None,
            # Numbers arrive from the engine as floats.
            ports={f"{int(p['internal'])}/tcp": (p.get("host_ip") or "127.0.0.1", int(p.get("external") or 0) or None)
                   for p in props["ports"] or []},
            volumes={v["source"]: {"bind": v["target"], "mode": "ro" if v.get("read_only") else "rw"}
                     for v in props["volumes"] or []},
            network=networks[0]["name"] if networks else None,
        )
        if networks and networks[0].get("aliases"):
            kwargs["networking_config"] = {networks[0]["name"]: client.api.create_endpoint_config(
                aliases=networks[0]["aliases"])}
        container = client.containers.create(**kwargs)
        try:
            copy_files(container, plain(props["files"] or {}), props["user"])
            # Every network joined before the process starts: its first action may need any of them (the
            # snapshot agent's first push, to the Pushgateway on the second, failed on "name not known").
            for extra in networks[1:]:
                client.networks.get(extra["name"]).connect(container, aliases=extra.get("aliases"))
            container.start()
            outs = self._outs(client, container.id, props)
            if props["wait_http_path"] and outs["host_ports"]:
                # A liveness probe only (nothing is sent), so a private CA need not be trusted here.
                scheme = "https" if props.get("wait_https") else "http"
                _wait_http(f"{scheme}://127.0.0.1:{outs['host_ports'][0]['external']}{props['wait_http_path']}",
                           container)
            if props.get("wait_log"):
                _wait_log(props["wait_log"], container)
        except Exception:
            # No half-made container left behind: a failed create removes it.
            container.remove(force=True)
            raise
        return CreateResult(container.id, outs)

    def _outs(self, client: docker.DockerClient, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        c = client.containers.get(id_)
        host_ports = []
        for key, binds in sorted((c.attrs["NetworkSettings"].get("Ports") or {}).items()):
            for b in binds or []:
                host_ports.append({"internal": int(key.split("/")[0]), "external": int(b["HostPort"]),
                                   "host_ip": b.get("HostIp") or ""})
        return {**props, "host_ports": host_ports, "state": c.status}

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = engine(props)
        try:
            return ReadResult(id_, self._outs(client, id_, props))
        except NotFound:
            return ReadResult(None, {})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = engine(news)
        changed = _changed_files(olds, news)
        if changed:
            container = client.containers.get(id_)
            copy_files(container, changed, news["user"])
            if news.get("reload_signal"):
                container.kill(signal=news["reload_signal"])
        return UpdateResult(self._outs(client, id_, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            engine(props).containers.get(id_).remove(force=True, v=False)
        except NotFound:
            pass


def _changed_files(olds: dict[str, Any], news: dict[str, Any]) -> dict[str, dict]:
    old, new = plain(olds.get("files") or {}), plain(news.get("files") or {})
    return {path: spec for path, spec in new.items() if old.get(path) != spec}


def _only_reloadable_changed(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """Only files named reloadable changed (none added or removed, every other input the same)."""
    old, new = plain(olds.get("files") or {}), plain(news.get("files") or {})
    reloadable = set(news.get("reloadable_files") or [])
    return (bool(reloadable) and set(old) == set(new)
            and all(p in reloadable for p in _changed_files(olds, news)))


def copy_files(container: Any, files: dict[str, dict], user: str) -> None:
    """Puts files into the created container (onto its volumes) through the API before it starts, so
    their content (keys, tokens) never shows in its config, command or environment."""
    uid, _, gid = (user or "0:0").partition(":")
    by_dir: dict[str, list[tuple[str, dict]]] = {}
    for path, spec in files.items():
        by_dir.setdefault(os.path.dirname(path), []).append((os.path.basename(path), spec))
    for directory, entries in by_dir.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, spec in entries:
                info = tarfile.TarInfo(name)
                info.mode = int(spec.get("mode", 0o400))
                info.uid, info.gid, info.mtime = int(uid or 0), int(gid or uid or 0), int(time.time())
                if spec.get("directory"):  # a folder owned by the container's user, e.g. on a fresh volume
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    continue
                data = spec["content"].encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if not _put_archive(container, directory, buf.getvalue()):
            raise RuntimeError(f"could not copy files into {container.name}:{directory}")


def _put_archive(container: Any, directory: str, data: bytes, attempts: int = 3) -> bool:
    """Podman's copy into a created container sometimes fails with a 500 while the engine creates others
    at the same moment ("passing bulk input to subprocess: write |1: broken pipe", seen with a dozen
    containers in one `up`); the same archive again lands, and writes the same files."""
    for attempt in range(attempts):
        try:
            return bool(container.put_archive(directory, data))
        except docker.errors.APIError as e:
            if e.status_code != 500 or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    return False


def _wait_http(url: str, container: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the unverified-TLS warning of this liveness probe
                requests.get(url, timeout=2, verify=False)  # noqa: S501
            return
        except requests.RequestException:
            container.reload()
            if container.status in ("exited", "dead"):
                break
            time.sleep(0.2)
    raise RuntimeError(f"container {container.name} did not answer on {url} (state {container.status})")


def _wait_log(text: str, container: Any, timeout: float = 90.0) -> None:
    """Waits for `text` in the container's log: the readiness of a server that speaks no HTTP."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text.encode() in container.logs():
            return
        container.reload()
        if container.status in ("exited", "dead"):
            break
        time.sleep(0.3)
    raise RuntimeError(f"container {container.name} did not log {text!r} (state {container.status})")


class Container(Resource, module="docker", name="Container"):
    """A long-running container. Ports publish on 127.0.0.1 by default; `external: 0` picks a free port."""

    host_ports: pulumi.Output[list]
    state: pulumi.Output[str]

    def __init__(self, name: str, *, container_name: str, image: pulumi.Input[str],
                 command: Optional[Sequence[pulumi.Input[str]]] = None, entrypoint: Optional[list[str]] = None,
                 env: Optional[pulumi.Input[dict[str, str]]] = None, ports: Optional[list[dict]] = None,
                 networks: Optional[list[dict]] = None, volumes: Optional[list[dict]] = None,
                 user: str = "", read_only: bool = False, tmpfs: Optional[dict[str, str]] = None,
                 labels: Optional[dict[str, str]] = None, restart: str = "unless-stopped",
                 cap_drop: Optional[list[str]] = None, cap_add: Optional[list[str]] = None,
                 security_opt: Optional[list[str]] = None, init: bool = True, mem_limit: str = "",
                 wait_http_path: str = "", wait_https: bool = False, wait_log: str = "",
                 files: Optional[pulumi.Input[dict[str, dict]]] = None,
                 reloadable_files: Optional[list[str]] = None, reload_signal: str = "",
                 docker_host: Optional[str] = None, opts: Optional[pulumi.ResourceOptions] = None):
        """`reloadable_files`: paths of `files` whose new content is written into the running container, then
        `reload_signal` sent to it (e.g. SIGHUP: OpenBao reloads its TLS certificate); any other change
        replaces the container."""
        super().__init__(_ContainerProvider(), name, {
            "name": container_name, "image": image, "command": list(command or []), "entrypoint": entrypoint or [],
            "env": env or {}, "ports": ports or [], "networks": networks or [], "volumes": volumes or [],
            "user": user, "read_only": read_only, "tmpfs": tmpfs or {}, "labels": labels or {},
            "restart": restart, "cap_drop": cap_drop if cap_drop is not None else ["ALL"], "cap_add": cap_add or [],
            "security_opt": security_opt if security_opt is not None else ["no-new-privileges"],
            "init": init, "mem_limit": mem_limit, "wait_http_path": wait_http_path, "wait_https": wait_https,
            "wait_log": wait_log,
            # {path on a volume: {"content": str, "mode": int} or {"directory": True, "mode": int}}, owned
            # by `user`; pass secret content as a Pulumi secret.
            "files": files or {}, "reloadable_files": reloadable_files or [], "reload_signal": reload_signal,
            "docker_host": docker_host or default_docker_host(), "host_ports": None, "state": None,
        }, opts)
