"""Checks of running containers from the inside, with testinfra's docker backend (the `docker` client
talking to the engine at DOCKER_HOST): non-root processes, only the expected listening ports, tight
modes on keys and secret files."""
import testinfra


def listening_ports(host) -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        out = host.run(f"cat {table}")
        for line in out.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def check_container(name: str, ports: set[int], files: dict[str, int]) -> None:
    host = testinfra.get_host(f"docker://{name}")
    uids = host.run("sh -c 'grep -h ^Uid: /proc/[0-9]*/status'").stdout.split("\n")
    real_uids = {int(line.split()[1]) for line in uids if line.startswith("Uid:")}
    assert real_uids and 0 not in real_uids, f"{name} runs a process as root: {real_uids}"
    assert listening_ports(host) == ports, f"{name} listens on {listening_ports(host)}, expected {ports}"
    for path, mode in files.items():
        f = host.file(path)
        assert f.exists, f"{name}:{path} missing"
        assert f.mode == mode, f"{name}:{path} has mode {oct(f.mode)}, expected {oct(mode)}"
