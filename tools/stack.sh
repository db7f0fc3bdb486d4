#!/usr/bin/env bash
# Non-interactive stack operations for people and CI: stack.sh up|down|preview STACK (tools/stack.py does it).
# Needs the toolchain environment (source .toolchain/env.sh; the Makefile does it).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
command -v pulumi >/dev/null || die "pulumi not on PATH: source .toolchain/env.sh (or run make ${1:-up})"
exec python tools/stack.py "$@"
