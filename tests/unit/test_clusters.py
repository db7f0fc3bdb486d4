"""Cluster components with Pulumi mocks: the Kubernetes StatefulSet's defaults and each setting's effect,
the Docker Raft cluster, the snapshot jobs and the bootstrap's arguments."""
import pulumi
import pytest

from infra.providers.vault_bootstrap import VaultBootstrap
from infra.vault_k8s import TransitSealArgs, VaultKubernetes, VaultKubernetesArgs
from infra.vault_raft_docker import VaultRaftDocker, VaultRaftDockerArgs
from infra.vault_snapshots_docker import VaultSnapshotsDocker, VaultSnapshotsDockerArgs
from tests.unit.conftest import run

pytestmark = pytest.mark.unit


def _k8s(**overrides) -> VaultKubernetes:
    args = dict(namespace="vault", image="openbao/openbao:2.7.2", tls_ca_pem="CA", tls_cert_pem="CERT",
                tls_key_pem="KEY")
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
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert not any(e["name"].endswith("_TOKEN") for e in c["env"])  # Shamir: no transit token
    assert "storageClassName" not in spec["volumeClaimTemplates"][0]["spec"]
    assert mocks.named("vault-sts").inputs["metadata"]["annotations"] == {}
    assert mocks.named("vault-pdb").inputs["spec"]["maxUnavailable"] == 1
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'seal "transit"' not in config and 'service_registration "kubernetes"' in config


def test_settings_take_effect(mocks):
    run(lambda: _k8s(replicas=5, storage_class="fast", skip_await=True, flavor="vault",
                     transit_seal=TransitSealArgs(address="https://transit:8200", key_name="unseal",
                                                  token_secret_name="transit-token"),
                     resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                     client_namespaces=["apps"]))
    spec = _sts(mocks)
    assert spec["replicas"] == 5
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    (c,) = spec["template"]["spec"]["containers"]
    assert c["command"][0] == "vault"
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    token_env = [e for e in c["env"] if e["name"] in ("BAO_TOKEN", "VAULT_TOKEN")]
    assert all(e["valueFrom"]["secretKeyRef"] == {"name": "transit-token", "key": "token"} for e in token_env)
    assert len(token_env) == 2
    config = mocks.named("vault-config").inputs["data"]["server.hcl"]
    assert 'seal "transit"' in config and 'key_name = "unseal"' in config
    assert 'audit "file"' not in config  # HashiCorp Vault: audit devices through the API
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


def test_bootstrap_outputs_are_secret(mocks):
    run(lambda: VaultBootstrap("b", node_addresses=["https://a"], admin_policy="p"))
    (b,) = mocks.of_type("vault:Bootstrap")
    assert (b.inputs["key_shares"], b.inputs["key_threshold"], b.inputs["revoke_root"]) == (5, 3, True)


def test_a_given_tls_secret_is_used_and_none_is_made(mocks):
    run(lambda: VaultKubernetes("vault", VaultKubernetesArgs(namespace="vault", image="i", tls_secret_name="corp-tls")))
    assert mocks.of_type("core/v1:Secret") == []
    volumes = _sts(mocks)["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == "corp-tls"
