"""A container on the engine, serving HTTP on a published loopback port."""
import pulumi

from infra.providers import docker

cfg = pulumi.Config()
name = cfg.require("name")
labels = {"vault-envvars.test": name}
net = docker.Network("net", network_name=f"{name}-net", labels=labels)
vol = docker.Volume("data", volume_name=f"{name}-data", labels=labels)
web = docker.Container(
    "web",
    container_name=name,
    image=cfg.require("image"),
    command=["python3", "-m", "http.server", "8080", "--directory", "/etc"],
    ports=[{"internal": 8080, "external": 0}],
    networks=[{"name": f"{name}-net", "aliases": ["web"]}],
    volumes=[{"source": f"{name}-data", "target": "/data"}],
    user="65534:65534",
    read_only=True,
    labels=labels,
    wait_http_path="/os-release",
    opts=pulumi.ResourceOptions(depends_on=[net, vol]),
)
pulumi.export("url", web.host_ports.apply(lambda p: f"http://127.0.0.1:{int(p[0]['external'])}"))
