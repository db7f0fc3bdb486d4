"""Prints an OIDC ID token for a demo user of the dev (or prod-local) stack, from the stack's own identity provider
(Vault's OIDC provider): userpass login, then the authorization-code flow through the API.

  python tools/dev_token.py alice [--stack dev]
"""
import argparse
import secrets
import sys

import requests

from infra.clients import kube_forward
from infra.dev_identity import CLI_REDIRECT_URI, PROVIDER_NAME
from tools.lib.kubeconfig import use_stack_kubeconfig
from tools.lib.stack_outputs import Out, stack_outputs


def id_token(outputs: dict, user: str, ca_file: str = "") -> str:
    addr = kube_forward.local_url(outputs[Out.VAULT_ADDRESS])  # a k8s:// address: through the API server
    verify = ca_file or True
    password = outputs[Out.DEMO_USER_PASSWORDS][user]
    login = requests.post(f"{addr}/v1/auth/userpass/login/{user}", json={"password": password}, verify=verify,
                          timeout=10)
    login.raise_for_status()
    vault_token = login.json()["auth"]["client_token"]
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    provider = f"{addr}/v1/identity/oidc/provider/{PROVIDER_NAME}"
    code = requests.get(f"{provider}/authorize", headers={"X-Vault-Token": vault_token}, verify=verify, timeout=10,
                        params={"client_id": outputs[Out.OIDC_CLIENT_ID], "scope": "openid", "response_type": "code",
                                "redirect_uri": CLI_REDIRECT_URI, "state": state, "nonce": nonce})
    code.raise_for_status()
    if code.json()["state"] != state:
        raise SystemExit("the provider answered with another state")
    token = requests.post(f"{provider}/token", auth=(outputs[Out.OIDC_CLIENT_ID], outputs[Out.OIDC_CLIENT_SECRET]),
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
    if outputs.get(Out.VAULT_CA_CERT):
        ca_file = f".pulumi/{args.stack}-ca.pem"
        with open(ca_file, "w") as f:
            f.write(outputs[Out.VAULT_CA_CERT])
    print(id_token(outputs, args.user, ca_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
