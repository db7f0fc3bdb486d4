"""Builds an image without a Dockerfile, for tools/images.sh, through the Docker Engine API (Docker or
Podman's compatible socket): runs a script as root in a container of a base image with no network, then
commits that container with Dockerfile instructions. One layer, and nothing of the script's folder in it
(a Dockerfile's COPY would keep what it copies in a layer even when a later step deletes it).

Usage: commit_image.py BASE IMAGE FOLDER SCRIPT [CHANGE...]
  FOLDER is copied to /build in the container and removed before the commit; SCRIPT (in FOLDER) runs with
  `sh`; each CHANGE is a Dockerfile instruction (USER, ENV, ENTRYPOINT, CMD, EXPOSE, STOPSIGNAL, ...).
Also: commit_image.py cat IMAGE PATH  (a file of IMAGE, to stdout)
"""
import io
import sys
import tarfile

import docker


def cat(client: docker.DockerClient, image: str, path: str) -> bytes:
    # From a container that never starts (a run's captured output can come back cut short).
    container = client.containers.create(image, [], entrypoint=["true"], network_mode="none")
    try:
        bits, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            if member is None:
                raise SystemExit(f"{path} is not a file in {image}")
            return member.read()
    finally:
        container.remove(force=True)


def commit(client: docker.DockerClient, base: str, image: str, folder: str, script: str, *changes: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname="build")
    container = client.containers.create(base, ["infinity"], entrypoint=["sleep"], user="0:0",
                                         network_mode="none", detach=True)
    try:
        container.start()
        container.put_archive("/", buf.getvalue())
        exec_id = client.api.exec_create(container.id, ["sh", f"/build/{script}"], user="0:0")["Id"]
        for chunk in client.api.exec_start(exec_id, stream=True):
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        code = client.api.exec_inspect(exec_id)["ExitCode"]
        if code != 0:
            raise SystemExit(f"{script} failed in a container of {base} (exit code {code})")
        container.exec_run(["rm", "-rf", "/build"], user="0:0")
        container.kill()
        container.wait()
        repo, tag = image.rsplit(":", 1)
        container.commit(repository=repo, tag=tag, changes=list(changes))
    finally:
        container.remove(force=True)
    client.images.get(image)  # raises if the commit did not land


def main(argv: list[str]) -> int:
    client = docker.from_env(timeout=600)
    if argv[:1] == ["cat"]:
        sys.stdout.buffer.write(cat(client, *argv[1:]))
    else:
        commit(client, *argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
