"""Pulumi mocks: components and stacks run in-process, every registered resource is recorded."""
import pulumi
import pytest


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _reveal(value):
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return _reveal(value["value"])
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        args.inputs = _reveal(args.inputs)  # tests look at values; secretness is tested on Outputs
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ.endswith("docker:Container"):
            outputs["host_ports"] = [
                {"internal": p["internal"], "external": p["external"] or 49152, "host_ip": "127.0.0.1"}
                for p in args.inputs.get("ports", [])
            ]
        if args.typ.endswith("vault:Mount"):
            outputs["accessor"] = f"{args.inputs['kind']}_{args.inputs['type']}_mock"
        if args.typ.endswith("vault:AppRoleCredential"):
            outputs.update(role_id="role-id-mock", secret_id="secret-id-mock", secret_id_accessor="acc")
        if args.typ.endswith("vault:Endpoint"):
            outputs["response"] = {k: f"{k}-mock" for k in args.inputs.get("read_back", [])}
            outputs["secret_response"] = {k: f"{k}-mock" for k in args.inputs.get("secret_read_back", [])}
        if args.typ.endswith("docker:Image"):
            outputs["image_id"] = "sha256:mock"
        if args.typ.endswith("tls:TlsBundle"):
            outputs.update(ca_pem="CA-PEM", cert_pem="CERT-PEM", key_pem="PRIVATE-KEY-PEM")
        if args.typ.endswith("random:FreePort"):
            outputs["port"] = 18080
        if args.typ.endswith("random:RandomSecret"):
            outputs["result"] = args.inputs.get("prefix", "") + "x" * int(args.inputs["length"])
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    def of_type(self, suffix: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ.endswith(suffix)]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        (match,) = [r for r in self.resources if r.name == name]
        return match


@pytest.fixture
def mocks(request) -> RecordingMocks:
    m = RecordingMocks()
    pulumi.runtime.set_mocks(m, project="vault-envvars", stack="dev", preview=False)
    config = getattr(request, "param", {})
    pulumi.runtime.set_all_config({f"vault-envvars:{k}": v for k, v in config.items()})
    yield m
    pulumi.runtime.set_all_config({})




def run(program) -> None:
    """Runs `program` under the mocks and returns once every resource it made is registered."""
    pulumi.runtime.test(program)()
