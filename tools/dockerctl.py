"""Engine-neutral image helpers for tools/images.sh, through the Docker Engine API (docker SDK).

Works the same against Docker and against Podman's compatible socket, so no `docker`/`podman` CLI is
required. Usage: dockerctl.py exists IMAGE | missing IMAGE... (prints the absent ones) | id IMAGE |
import IMAGE (tar on stdin) | save IMAGE (tar on stdout) | build CONTEXT IMAGE |
build-file CONTEXT DOCKERFILE IMAGE [ARG=VALUE...]
"""
import json
import sys

from docker.errors import ImageNotFound

from infra.clients import engine_api


def main(argv: list[str]) -> int:
    client = engine_api.client(timeout=600)
    cmd, *args = argv
    if cmd == "exists":
        try:
            client.images.get(args[0])
            return 0
        except ImageNotFound:
            return 1
    if cmd == "missing":  # one engine connection for several images (tools/images.sh, every toolchain run)
        for image in args:
            try:
                client.images.get(image)
            except ImageNotFound:
                print(image)
        return 0
    if cmd == "import":
        repo, tag = args[0].rsplit(":", 1)
        result = client.api.import_image_from_stream(sys.stdin.buffer, repository=repo, tag=tag)
        # Podman's compatible endpoint ignores the tag (it imports as :latest): tag by the returned id.
        image_id = json.loads(result.strip().splitlines()[-1])["status"].strip()
        client.images.get(image_id).tag(repo, tag)
        if tag != "latest" and f"{repo}:latest" in client.images.get(image_id).tags:
            client.images.remove(f"{repo}:latest")
        client.images.get(args[0])  # raises if the import did not land
        return 0
    if cmd == "id":
        print(client.images.get(args[0]).id)
        return 0
    if cmd == "save":
        for chunk in client.images.get(args[0]).save(named=True):
            sys.stdout.buffer.write(chunk)
        return 0
    if cmd in ("build", "build-file"):
        context, dockerfile, tag, build_args = (args[0], "Dockerfile", args[1], []) if cmd == "build" else \
            (args[0], args[1], args[2], args[3:])
        _, logs = client.images.build(path=context, dockerfile=dockerfile, tag=tag, rm=True, forcerm=True,
                                      buildargs=dict(a.split("=", 1) for a in build_args))
        for chunk in logs:
            if "stream" in chunk:
                sys.stderr.write(chunk["stream"])
        return 0
    raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
