"""Cluster components with Pulumi mocks: the Kubernetes StatefulSet's defaults and each setting's effect,
the Docker Raft cluster, the snapshot jobs and the bootstrap's arguments."""
import pulumi
import pytest

from infra.providers.vault_bootstrap import VaultBootstrap
from infra.vault_dev_server import VaultDevServer, VaultDevServerArgs
from infra.vault_k8s import ContainerResources, TlsSecretArgs, VaultKubernetes, VaultKubernetesArgs
from infra.vault_raft_docker import VaultRaftDocker, VaultRaftDockerArgs
from infra.vault_seal import StaticSealArgs, TransitSealArgs
from infra.vault_snapshots_docker import VaultSnapshotsDocker, VaultSnapshotsDockerArgs
from tests.unit.helpers import run

pytestmark = pytest.mark.unit


def _k8s(**overrides) -> VaultKubernetes:
    args = dict(namespace="vault", image="openbao/openbao:2.7.2")
    args.update(overrides)
    return VaultKubernetes("vault", VaultKubernetesArgs(**args))


def _sts(mocks) -> dict:
    return mocks.named("vault-sts").inputs["spec"]


def test_statefulset_defaults(mocks):
    run(_k8s)
    spec = _sts(mocks)
    assert spec["replicas"] == 3
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] \
        == "kubernetes.io/hostname"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000
    (c,) = pod["containers"]
    assert c["securityContext"] == {"runAsNonRoot": True, "runAsUser": 100, "runAsGroup": 1000,
                                    "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}
    assert "sealedcode=200" in c["livenessProbe"]["httpGet"]["path"]
    assert "sealedcode" not in c["readinessProbe"]["httpGet"]["path"]
    assert c["lifecycle"]["preStop"]["exec"]["command"][-1] == "sleep 5"
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "1Gi"}
    assert not any(e["name"].endswith("_TOKEN") for e in c["env"])  # Shamir: no transit token
    assert "storageClassName" not in spec["volumeClaimTemplates"][0]["spec"]
    # Never awaited: its pods turn Ready once unsealed, which only the bootstrap, after it, does; so with
    # the Services that select Ready pods. The other objects keep the default await.
    assert mocks.named("vault-sts").inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    services = mocks.of_type("core/v1:Service")
    assert len(services) == 4 and all(
        s.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"} for s in services)
    assert "annotations" not in mocks.named("vault-config").inputs["metadata"]
    # OpenBao's service registration labels the pods openbao-active, openbao-sealed...
    assert mocks.named("vault-svc-vault-active").inputs["spec"]["selector"]["openbao-active"] == "true"
    assert mocks.named("vault-svc-vault-standby").inputs["spec"]["selector"]["openbao-active"] == "false"
    assert mocks.named("vault-pdb").inputs["spec"]["maxUnavailable"] == 1
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'seal "transit"' not in config and 'service_registration "kubernetes"' in config


def test_settings_take_effect(mocks):
    run(lambda: _k8s(replicas=5, storage_class="fast", skip_await=True, flavor="vault",
                     seal=TransitSealArgs(address="https://transit:8200", key_name="unseal",
                                          token_secret_name="transit-token", ca_secret_name="transit-ca"),
                     resources=ContainerResources(cpu_request="1", memory_request="1Gi", cpu_limit="2",
                                                  memory_limit="2Gi"),
                     client_namespaces=["apps"]))
    spec = _sts(mocks)
    assert spec["replicas"] == 5
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    (c,) = spec["template"]["spec"]["containers"]
    assert c["command"][0] == "vault"
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "64Mi"},
                              "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "1Gi"}}
    token_env = [e for e in c["env"] if e["name"] in ("BAO_TOKEN", "VAULT_TOKEN")]
    assert all(e["valueFrom"]["secretKeyRef"] == {"name": "transit-token", "key": "token"} for e in token_env)
    assert len(token_env) == 2
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'seal "transit"' in config and 'key_name = "unseal"' in config
    assert 'tls_ca_cert = "/bao/seal-ca/ca.pem"' in config and "token" not in config.split('seal "transit"')[1]
    assert {"name": "seal-ca", "mountPath": "/bao/seal-ca", "readOnly": True} in c["volumeMounts"]
    assert 'audit "file"' not in config  # HashiCorp Vault: audit devices through the API
    assert mocks.named("vault-svc-vault-active").inputs["spec"]["selector"]["vault-active"] == "true"
    assert "https://vault-4.vault-internal:8200" in config
    assert mocks.named("vault-sts").inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    froms = mocks.named("vault-netpol").inputs["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}} in froms


@pytest.mark.parametrize("replicas", [1, 2, 4])
def test_raft_needs_an_odd_quorum(mocks, replicas):
    with pytest.raises(ValueError, match="odd number"):
        run(lambda: _k8s(replicas=replicas))


def test_docker_raft_cluster(mocks):
    run(lambda: VaultRaftDocker("vault", VaultRaftDockerArgs(image="img", labels={"l": "v"})))
    containers = sorted(mocks.of_type("docker:Container"), key=lambda r: r.name)
    assert [c.name for c in containers] == ["vault-vault-1", "vault-vault-2", "vault-vault-3"]
    for i, c in enumerate(containers, start=1):
        i_ = c.inputs
        assert i_["user"] == "100:1000" and i_["read_only"] is True and i_["cap_drop"] == ["ALL"]
        assert i_["env"]["BAO_RAFT_NODE_ID"] == f"vault-{i}"
        assert i_["env"]["BAO_API_ADDR"] == f"https://vault-{i}:8200"
        assert i_["networks"][0]["aliases"] == [f"vault-{i}", "vault"]
        assert sorted(i_["files"]) == ["/bao/config/ca.pem", "/bao/config/server.hcl", "/bao/config/tls.crt",
                                       "/bao/config/tls.key"]
        assert i_["files"]["/bao/config/tls.key"] == {"content": "PRIVATE-KEY-PEM", "mode": 0o400}
        assert {v["target"] for v in i_["volumes"]} == {"/bao/data", "/bao/config", "/bao/logs"}
        assert "PRIVATE-KEY-PEM" not in str(i_["env"]) + str(i_["command"]) + str(i_["labels"])
    assert len(mocks.of_type("docker:Volume")) == 9
    tls = mocks.of_type("tls:TlsBundle")[0].inputs
    assert set(tls["dns_names"]) >= {"vault", "vault-1", "vault-2", "vault-3", "localhost"}


def test_docker_snapshots(mocks):
    run(lambda: VaultSnapshotsDocker("snap", VaultSnapshotsDockerArgs(
        image="py", network_name="net", vault_address="https://vault:8200", ca_cert_pem="CA",
        role_id="rid", secret_id="sid", interval_seconds=600, retain=5)))
    (c,) = mocks.of_type("docker:Container")
    cmd = c.inputs["command"]
    assert cmd[cmd.index("--retain") + 1] == "5" and cmd[cmd.index("--interval") + 1] == "600"
    assert "sid" not in cmd and c.inputs["files"]["/agent/secret_id"] == {"content": "sid", "mode": 0o400}
    assert c.inputs["files"]["/data/snapshots"] == {"directory": True, "mode": 0o750}


def test_bootstrap_threshold_must_fit_the_shares(mocks):
    with pytest.raises(ValueError, match="key_threshold"):
        run(lambda: VaultBootstrap("b", node_addresses=["https://a"], admin_policy="p", key_shares=3,
                                   key_threshold=4))


def test_bootstrap_defaults_are_five_shares_three_to_unseal_and_root_revoked(mocks):
    run(lambda: VaultBootstrap("b", node_addresses=["https://a"], admin_policy="p"))
    (b,) = mocks.of_type("vault:Bootstrap")
    assert (b.inputs["key_shares"], b.inputs["key_threshold"], b.inputs["revoke_root"]) == (5, 3, True)


def test_bootstrap_outputs_are_secret(mocks):
    flags = {}

    def program():
        b = VaultBootstrap("b", node_addresses=["https://a"], admin_policy="p", revoke_root=False)
        outputs = {"unseal_keys": b.unseal_keys, "recovery_keys": b.recovery_keys, "root_token": b.root_token,
                   "admin_token": b.admin_token}
        return pulumi.Output.all(*[pulumi.Output.from_input(o.is_secret()).apply(
            lambda s, k=k: flags.__setitem__(k, s)) for k, o in outputs.items()])

    run(program)
    assert flags == {"unseal_keys": True, "recovery_keys": True, "root_token": True, "admin_token": True}


def test_static_seal_generated_key_is_a_secret_mounted_read_only(mocks):
    run(lambda: _k8s(seal=StaticSealArgs(), generate_static_key=True))
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'seal "static" {\n  current_key_id = "1"\n  current_key = "file:///bao/seal/key"\n}' in config
    assert "previous_key" not in config
    pod = _sts(mocks)["template"]["spec"]
    assert {"name": "seal", "secret": {"secretName": "vault-seal-key", "defaultMode": 0o440}} in pod["volumes"]
    assert {"name": "seal", "mountPath": "/bao/seal", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert not any(e["name"].endswith("_TOKEN") for e in pod["containers"][0]["env"])
    (key,) = mocks.of_type("random:RandomKey")
    assert key.inputs["bytes"] == 32
    secret = mocks.named("vault-seal-key").inputs
    assert secret["metadata"]["name"] == "vault-seal-key" and secret["stringData"]["key"] == "ab" * 32


def test_static_seal_from_the_operators_secret_with_a_previous_key(mocks):
    run(lambda: _k8s(seal=StaticSealArgs(secret_name="corp-seal", key_id="2024-06", previous_key_id="2023-01")))
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'current_key_id = "2024-06"' in config and 'previous_key_id = "2023-01"' in config
    assert 'previous_key = "file:///bao/seal/previous-key"' in config
    assert mocks.of_type("random:RandomKey") == [] and not [r for r in mocks.resources if r.name == "vault-seal-key"]
    pod = _sts(mocks)["template"]["spec"]
    assert {"name": "seal", "secret": {"secretName": "corp-seal", "defaultMode": 0o440}} in pod["volumes"]


def test_kubernetes_cluster_makes_its_certificate_for_its_own_names(mocks):
    seen = {}
    run(lambda: _k8s(name="bao", namespace="secrets").ca_cert_pem.apply(lambda ca: seen.update(ca=ca)))
    (tls,) = mocks.of_type("tls:TlsBundle")
    assert tls.inputs["common_name"] == "bao" and tls.inputs["ip_addresses"] == ["127.0.0.1"]
    services = ("bao", "bao-active", "bao-standby", "bao-internal")
    assert sorted(tls.inputs["dns_names"]) == sorted([
        "localhost", *[f"{s}{q}" for s in services for q in ("", ".secrets", ".secrets.svc")],
        *[f"bao-{i}.bao-internal{q}" for i in range(3) for q in ("", ".secrets.svc")],
    ])
    (secret,) = mocks.of_type("core/v1:Secret")
    assert secret.inputs["stringData"] == {"ca.pem": "CA-PEM", "tls.crt": "CERT-PEM", "tls.key": "PRIVATE-KEY-PEM"}
    volumes = _sts(mocks)["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == secret.inputs["metadata"]["name"]
    assert seen == {"ca": "CA-PEM"}


def test_a_given_tls_secret_is_used_and_none_is_made(mocks):
    seen = {}
    run(lambda: _k8s(tls_secret=TlsSecretArgs(name="corp-tls", ca_cert_pem="CORP CA")).ca_cert_pem.apply(
        lambda ca: seen.update(ca=ca)))
    assert mocks.of_type("core/v1:Secret") == [] and mocks.of_type("tls:TlsBundle") == []
    volumes = _sts(mocks)["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == "corp-tls"
    assert seen == {"ca": "CORP CA"}


def _endpoints(cluster) -> pulumi.Output:
    return pulumi.Output.all(host=cluster.host_address, internal=cluster.internal_address, ca=cluster.ca_cert_pem,
                             nodes=getattr(cluster, "node_addresses", None))


K8S_HOST = ["https://127.0.0.1:18300", "https://127.0.0.1:18301", "https://127.0.0.1:18302"]


@pytest.mark.parametrize("make,expected", [
    (lambda: VaultDevServer("vault", VaultDevServerArgs(image="img", root_token="t", host_port=18200)),
     {"host": "http://127.0.0.1:18200", "internal": "http://vault:8200", "ca": "", "nodes": None}),
    (lambda: VaultRaftDocker("vault", VaultRaftDockerArgs(image="img", host_ports=[18201, 18202, 18203])),
     {"host": "https://127.0.0.1:18201", "internal": "https://vault:8200", "ca": "CA-PEM",
      "nodes": ["https://127.0.0.1:18201", "https://127.0.0.1:18202", "https://127.0.0.1:18203"]}),
    (lambda: _k8s(namespace="secrets", host_addresses=K8S_HOST),
     {"host": K8S_HOST[0], "internal": "https://vault-active.secrets.svc:8200", "ca": "CA-PEM", "nodes": K8S_HOST}),
    (lambda: _k8s(namespace="secrets"),
     {"host": "k8s://secrets/svc/vault-active:8200", "internal": "https://vault-active.secrets.svc:8200",
      "ca": "CA-PEM", "nodes": [f"k8s://secrets/vault-{i}:8200" for i in range(3)]}),
], ids=["dev-server", "raft-docker", "kubernetes", "kubernetes-through-the-api-server"])
def test_every_cluster_has_the_same_endpoint_shape(mocks, make, expected):
    seen = []
    run(lambda: _endpoints(make()).apply(seen.append))
    assert seen == [expected]


def test_kubernetes_host_addresses_are_one_per_pod(mocks):
    with pytest.raises(ValueError, match="one per replica"):
        run(lambda: _k8s(host_addresses=K8S_HOST[:1]))
