"""tools/versions.env for Python: the toolchain's versions and the default image names, written once there
(the shell scripts source the file; the stacks and the tests read it through this)."""
import os
from functools import lru_cache

VERSIONS_ENV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "versions.env")


@lru_cache(maxsize=1)
def toolchain_versions() -> dict[str, str]:
    """NAME=value lines (comments and blank lines skipped; values are plain words, never quoted)."""
    out = {}
    with open(VERSIONS_ENV) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                out[name] = value
    return out
