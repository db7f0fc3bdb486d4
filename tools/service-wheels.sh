#!/usr/bin/env bash
# Fetches the service's wheels on the host into .build/wheels, for the service image to install offline
# (containers here cannot verify the registry's TLS chain; the host can).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/.venv/bin/pip" download -q --disable-pip-version-check -d .build/wheels -r service/requirements.txt
echo "$REPO_ROOT/.build/wheels"
