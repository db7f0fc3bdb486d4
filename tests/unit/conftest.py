"""Pulumi mocks: components and stacks run in-process, every registered resource is recorded."""
import threading

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def _is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def _reveal(value):
    if isinstance(value, dict):
        if _is_secret(value):
            return _reveal(value["value"])
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


# The additional_secret_outputs of the resource being registered on this thread (see EngineLikeMonitor).
_registering = threading.local()


class EngineLikeMonitor(MockMonitor):
    """Pulumi's mock monitor ignores `additional_secret_outputs`; the engine makes those outputs secret, and
    so does this one, so tests can check a resource declares them."""

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method it overrides)
        _registering.secret_outputs = set(request.additionalSecretOutputs)
        try:
            return super().RegisterResource(request)
        finally:
            _registering.secret_outputs = set()


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        # Tests look at values (`inputs`); `secret_inputs` names the inputs that arrived as secrets.
        args.secret_inputs = {k for k, v in args.inputs.items() if _is_secret(v)}
        args.inputs = _reveal(args.inputs)
        self.resources.append(args)
        outputs = self._outputs(args)
        for key in getattr(_registering, "secret_outputs", set()) & set(outputs):
            outputs[key] = {SECRET_SIG: SECRET_VALUE, "value": outputs[key]}
        return f"{args.name}-id", outputs

    @staticmethod
    def _outputs(args: pulumi.runtime.MockResourceArgs) -> dict:
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
        if args.typ.endswith("vault:UserEntity"):
            outputs["entity_id"] = f"entity-{args.inputs['alias']}"
        if args.typ.endswith("docker:Image"):
            outputs["image_id"] = "sha256:mock"
        if args.typ.endswith("tls:TlsBundle"):
            outputs.update(ca_pem="CA-PEM", cert_pem="CERT-PEM", key_pem="PRIVATE-KEY-PEM")
        if args.typ.endswith("tls:SigningKey"):
            outputs.update(public_pem="SIGNING-PUBLIC-PEM", key_pem="SIGNING-PRIVATE-KEY-PEM")
        if args.typ.endswith("random:FreePort"):
            outputs["port"] = 18080
        if args.typ.endswith("random:RandomSecret"):
            outputs["result"] = args.inputs.get("prefix", "") + "x" * int(args.inputs["length"])
        if args.typ.endswith("random:RandomKey"):
            outputs["hex"] = "ab" * int(args.inputs["bytes"])
        if args.typ.endswith("vault:Bootstrap"):
            auto = args.inputs.get("seal_type", "shamir") != "shamir"
            shares = ["share-mock"] * int(args.inputs["key_shares"])
            outputs.update(unseal_keys=[] if auto else shares, recovery_keys=shares if auto else [],
                           root_token="root-mock", admin_token="admin-token-mock")
        return outputs

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
    pulumi.runtime.set_mocks(m, project="vault-envvars", stack="dev", preview=False, monitor=EngineLikeMonitor(m))
    config = getattr(request, "param", {})
    pulumi.runtime.set_all_config({f"vault-envvars:{k}": v for k, v in config.items()})
    yield m
    pulumi.runtime.set_all_config({})
