"""Schema migrations with N replicas: every replica runs `service.db.migrate` at start. Four processes
started against one empty real PostgreSQL database are released at the same instant: one upgrades, the
others wait on the advisory lock and find the schema at head (without the lock they race: "relation
already exists", duplicate pg_type rows)."""
import os
import secrets
import subprocess
import sys
import time

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.integration]

REPLICAS = 4
# A replica's start, reduced to its migration: imports done, then all released at one wall-clock instant.
START = """
import sys, time
from service.db import migrate
start_at = float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
t0 = time.monotonic()
migrate(sys.argv[1])
print(f"migrated in {time.monotonic() - t0:.3f} s")
"""


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", os.path.join(REPO_ROOT, "service", "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_replicas_starting_at_once_migrate_once(postgres):
    url = postgres.create_database(f"migrate_{secrets.token_hex(4)}")
    start_at = time.time() + 4  # every process has imported SQLAlchemy and Alembic by then
    procs = [subprocess.Popen([sys.executable, "-c", START, url, str(start_at)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(REPLICAS)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code == 0, err[-2000:]
    print("\n" + "; ".join(out.strip() for _, out, _ in results))
    engine = create_engine(url)
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [_head()]
        assert c.execute(text("SELECT count(*) FROM env_vars")).scalar() == 0
    engine.dispose()
