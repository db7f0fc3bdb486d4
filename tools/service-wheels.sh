#!/usr/bin/env bash
# Fetches the service's wheels on the host into .build/wheels, for the service image to install offline
# (containers here cannot verify the registry's TLS chain; the host can).
# pip asks the index about every requirement even when each wheel is already there (~10 s on a warm run),
# so a stamp beside the folder records what the last complete download was made from: the requirements,
# the interpreter it resolved for, and the wheels it left. While all three are unchanged, pip is not run.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
WHEELS=.build/wheels
STAMP=.build/wheels.stamp  # outside the folder: the image's build context and its digest never see it
key() {
  { sha256sum service/requirements.txt; grep '^version' .venv/pyvenv.cfg || true
    find "$WHEELS" -type f 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum; } | sha256sum | cut -d' ' -f1
}
if [ ! -d "$WHEELS" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$(key)" ]; then
  rm -f "$STAMP"
  "$REPO_ROOT/.venv/bin/pip" download -q --disable-pip-version-check -d "$WHEELS" -r service/requirements.txt
  key > "$STAMP"
fi
echo "$REPO_ROOT/$WHEELS"
