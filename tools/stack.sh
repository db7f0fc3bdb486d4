#!/usr/bin/env bash
# Non-interactive stack operations for people and CI: stack.sh up|down|preview STACK
# Needs the toolchain environment (source .toolchain/env.sh; the Makefile does it).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
ACTION=${1:?usage: stack.sh up|down|preview STACK}
STACK=${2:-dev}
command -v pulumi >/dev/null || die "pulumi not on PATH: source .toolchain/env.sh (or run make $ACTION)"

pulumi stack select "$STACK" --create --non-interactive >/dev/null
# Dynamic providers (the prod bootstrap reaching the pods through the Kubernetes API) run under the CLI's
# environment: KUBECONFIG must name the cluster of the stack's `kubeconfig` setting (a path, relative to
# the repo root, or the content: then a private temporary file for this run).
kubeconfig=$(pulumi config get vault-envvars:kubeconfig --non-interactive 2>/dev/null || true)
if [ -n "$kubeconfig" ]; then
  if [[ "$kubeconfig" == *$'\n'* || "$kubeconfig" == "{"* || "$kubeconfig" == *"apiVersion:"* ]]; then
    KUBECONFIG=$(mktemp "${TMPDIR:-/tmp}/kubeconfig-XXXXXX")  # 0600
    trap 'rm -f "$KUBECONFIG"' EXIT
    printf '%s\n' "$kubeconfig" > "$KUBECONFIG"
  else
    case "$kubeconfig" in
      /*) KUBECONFIG=$kubeconfig ;;
      "~/"*) KUBECONFIG=$HOME/${kubeconfig#"~/"} ;;
      *) KUBECONFIG=$REPO_ROOT/$kubeconfig ;;
    esac
  fi
  export KUBECONFIG
fi
unset kubeconfig
case "$ACTION" in
  up)
    step "pulumi up --refresh ($STACK)"
    # --refresh: reads what is really there first, so drift (a deleted container, Secret or Vault object) is
    # put back, not reported unchanged. Every up also renews the config-admin token and certificates within
    # their renewal window (docs/credentials-and-rollouts.md).
    pulumi up --refresh --yes --non-interactive --skip-preview --suppress-progress
    done_step
    step "checking what was deployed, as a user would (tools/stack_check.py)"
    python tools/stack_check.py "$STACK" || die "stack $STACK was deployed but does not work (the failing check is above)"
    done_step
    # The outputs read once (secrets stay "[secret]", as `pulumi stack output NAME` prints them).
    outputs=$(pulumi stack output --json 2>/dev/null || echo '{}')
    output() {  # output NAME: prints that output, or fails when the stack has none of that name
      python3 -c 'import json, sys; o, n = json.loads(sys.argv[1]), sys.argv[2]; print(o[n]) if n in o else sys.exit(1)' \
        "$outputs" "$1"
    }
    echo
    echo "Stack $STACK is up. In a shell with the toolchain (source .toolchain/env.sh):"
    if addr=$(output vault_address); then
      echo "  Vault:  $addr"
      ca=""
      if output vault_ca_cert >/dev/null; then
        ca=".pulumi/$STACK-ca.pem"
        output vault_ca_cert > "$ca"
        ca=" VAULT_CACERT=$ca"
      fi
      # Only where a root token is kept (dev); prod revokes it, and a k8s:// address is this tool's own.
      if output vault_root_token >/dev/null; then
        echo "  Try it: export VAULT_ADDR=$addr$ca VAULT_TOKEN=\$(pulumi stack output --show-secrets vault_root_token -s $STACK)"
        echo "          \$BAO_BIN kv put secret/hello who=you && \$BAO_BIN kv get secret/hello"
      fi
    fi
    if url=$(output service_url); then
      echo "  Dashboard: $url/dashboard/   sign in with Method \"Username\": alice or bob; their passwords:"
      echo "          pulumi stack output --show-secrets demo_user_passwords -s $STACK"
      echo "  Service: $url   (OpenAPI: $url/docs)"
      echo "  Try it: TOKEN=\$(python tools/dev_token.py alice --stack $STACK) && curl -s -H \"Authorization: Bearer \$TOKEN\" \\"
      echo "            -H 'Content-Type: application/json' -d '{\"name\":\"GREETING\",\"value\":\"hello\"}' $url/api/v2/user/env-vars"
    fi
    # A k8s://<namespace>/svc/<name>:<port> address (prod) is a Service reached through the Kubernetes API.
    for what in Prometheus Alertmanager; do
      url=$(output "$(tr '[:upper:]' '[:lower:]' <<<"$what")_url") || continue
      if [[ $url =~ ^k8s://([^/]+)/svc/([^:]+):([0-9]+)$ ]]; then
        echo "  $what: $url   (kubectl -n ${BASH_REMATCH[1]} port-forward svc/${BASH_REMATCH[2]} ${BASH_REMATCH[3]}, then http://127.0.0.1:${BASH_REMATCH[3]})"
      else
        echo "  $what: $url"
      fi
    done
    ;;
  down)
    step "pulumi destroy ($STACK)"
    pulumi destroy --yes --non-interactive --skip-preview --suppress-progress
    done_step
    ;;
  preview)
    pulumi preview --non-interactive --diff
    ;;
  *) die "unknown action $ACTION: use up, down or preview" ;;
esac
