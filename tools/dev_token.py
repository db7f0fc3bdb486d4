"""Prints an OIDC ID token for a demo user of the dev (or prod-local) stack, from the stack's own identity provider
(Vault's OIDC provider): userpass login, then the authorization-code flow through the API.

  python tools/dev_token.py alice [--stack dev]
"""
import argparse
import json
import os
import secrets
import subprocess
import sys
from typing import Optional

import requests

from infra import kube_forward
from infra.dev_identity import CLI_REDIRECT_URI, PROVIDER_NAME

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stack_outputs(stack: str) -> dict:
    out = subprocess.run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def use_stack_kubeconfig(stack: str) -> Optional[str]:
    """A prod(-local) stack's Vault is reached through the Kubernetes API, with the stack's own kubeconfig
    (its `kubeconfig` setting: a path, relative to the repository, or the content); none: KUBECONFIG.
    Returns the kubeconfig used (a path or the content), or None."""
    kubeconfig = subprocess.run(["pulumi", "config", "get", "vault-envvars:kubeconfig", "--stack", stack],
                                capture_output=True, text=True, check=False).stdout.strip()
    if not kubeconfig:
        return None
    if "\n" not in kubeconfig and not os.path.isabs(kubeconfig):
        kubeconfig = os.path.join(REPO_ROOT, kubeconfig)
    kube_forward.use_kubeconfig(kubeconfig)
    return kubeconfig


def id_token(outputs: dict, user: str, ca_file: str = "") -> str:
    addr = kube_forward.local_url(outputs["vault_address"])  # a k8s:// address: through the API server
    verify = ca_file or True
    password = outputs["demo_user_passwords"][user]
    login = requests.post(f"{addr}/v1/auth/userpass/login/{user}", json={"password": password}, verify=verify,
                          timeout=10)
    login.raise_for_status()
    vault_token = login.json()["auth"]["client_token"]
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    provider = f"{addr}/v1/identity/oidc/provider/{PROVIDER_NAME}"
    code = requests.get(f"{provider}/authorize", headers={"X-Vault-Token": vault_token}, verify=verify, timeout=10,
                        params={"client_id": outputs["oidc_client_id"], "scope": "openid", "response_type": "code",
                                "redirect_uri": CLI_REDIRECT_URI, "state": state, "nonce": nonce})
    code.raise_for_status()
    if code.json()["state"] != state:
        raise SystemExit("the provider answered with another state")
    token = requests.post(f"{provider}/token", auth=(outputs["oidc_client_id"], outputs["oidc_client_secret"]),
                          data={"grant_type": "authorization_code", "code": code.json()["code"],
                                "redirect_uri": CLI_REDIRECT_URI}, verify=verify, timeout=10)
    token.raise_for_status()
    requests.post(f"{addr}/v1/auth/token/revoke-self", headers={"X-Vault-Token": vault_token}, verify=verify,
                  timeout=10)
    return token.json()["id_token"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("user")
    ap.add_argument("--stack", default="dev")
    args = ap.parse_args()
    outputs = stack_outputs(args.stack)
    use_stack_kubeconfig(args.stack)
    ca_file = ""
    if outputs.get("vault_ca_cert"):
        ca_file = f".pulumi/{args.stack}-ca.pem"
        with open(ca_file, "w") as f:
            f.write(outputs["vault_ca_cert"])
    print(id_token(outputs, args.user, ca_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
