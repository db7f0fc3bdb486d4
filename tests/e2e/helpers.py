"""Helpers shared by the end-to-end tests (fixtures stay in conftest.py): the dev stack's test program,
`make up`'s stack check on a throwaway stack, and a client of one Vault node."""
import os
import subprocess
import sys

import hvac

from tests.helpers import REPO_ROOT

DEV_STACK_PROGRAM = "e2e/programs/dev_stack"


def stack_check(s, wait: float = 30) -> subprocess.CompletedProcess:
    """tools/stack_check.py on a throwaway stack, as `make up` runs it."""
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "stack_check.py"), s.name,
                           "--wait", str(wait)], cwd=s.work_dir, capture_output=True, text=True,
                          env={**os.environ, **s.env, "PYTHONPATH": REPO_ROOT}, timeout=300)


def vault_client(address, token, ca_file) -> hvac.Client:
    return hvac.Client(url=address, token=token, verify=ca_file, timeout=3)
