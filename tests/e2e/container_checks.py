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


def check_container(name: str, ports: set[int], files: dict[str, int], root_caps: int = 0,
                    root: bool = False) -> None:
    """`root_caps`: a container whose processes run as uid 0 with at most these capabilities (effective
    and bounding), e.g. the service's (SETUID, SETGID, KILL for its job sandbox); `root` alone: uid 0 with
    no capability at all (the owner of files it must read); otherwise none is root."""
    host = testinfra.get_host(f"docker://{name}")
    out = host.run("sh -c 'grep -h -e ^Uid: -e ^CapEff: -e ^CapBnd: /proc/[0-9]*/status'").stdout.split()
    procs = [(int(out[i + 1]), int(out[i + 6], 16), int(out[i + 8], 16)) for i in range(0, len(out), 9)]
    assert procs, f"no process seen in {name}"
    for uid, eff, bounding in procs:
        if root_caps or root:
            assert (eff | bounding) & ~root_caps == 0, f"{name}: a process has capabilities {eff:#x}/{bounding:#x}"
        else:
            assert uid != 0, f"{name} runs a process as root: {procs}"
    assert listening_ports(host) == ports, f"{name} listens on {listening_ports(host)}, expected {ports}"
    for path, mode in files.items():
        f = host.file(path)
        assert f.exists, f"{name}:{path} missing"
        assert f.mode == mode, f"{name}:{path} has mode {oct(f.mode)}, expected {oct(mode)}"
