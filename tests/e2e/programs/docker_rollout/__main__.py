"""An image built from a context the test edits, run by its id, serving its own files and one file that is
copied in and may be renewed in place (reloadable, with a signal)."""
import pulumi

from infra.providers import docker

cfg = pulumi.Config()
name = cfg.require("name")
labels = {"vault-envvars.test": name}
# /srv over HTTP, and /reloads: how many SIGHUPs this process has had.
SERVER = """
import functools, http.server, signal
reloads = [0]
signal.signal(signal.SIGHUP, lambda *_: reloads.__setitem__(0, reloads[0] + 1))
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/reloads":
            return super().do_GET()
        body = str(reloads[0]).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8080), functools.partial(Handler, directory="/srv")).serve_forever()
"""
image = docker.Image("image", tag=f"localhost/vault-envvars/rollout-test:{name}", context=cfg.require("context"),
                     build_args={"BASE": cfg.require("base")})
vol = docker.Volume("data", volume_name=f"{name}-data", labels=labels)
web = docker.Container(
    "web",
    container_name=name,
    image=image.image_id,
    command=["python3", "-c", SERVER],
    ports=[{"internal": 8080, "external": 0}],
    volumes=[{"source": f"{name}-data", "target": "/srv/data"}],
    user="65534:65534",
    read_only=True,
    labels=labels,
    files={"/srv/data/renewed.txt": {"content": cfg.require("renewed"), "mode": 0o444}},
    reloadable_files=["/srv/data/renewed.txt"],
    reload_signal="SIGHUP",
    wait_http_path="/app.txt",
    opts=pulumi.ResourceOptions(depends_on=[vol]),
)
pulumi.export("url", web.host_ports.apply(lambda p: f"http://127.0.0.1:{int(p[0]['external'])}"))
pulumi.export("container_id", web.id)
pulumi.export("image_id", image.image_id)
