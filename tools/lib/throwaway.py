"""A stack of its own for one run, driven by the Automation API through the real CLI: a program folder
(the tests' and benchmarks' small programs) or a program given as a function (the drills' throwaway
clusters), on a backend and passphrase of the caller's or of its own; destroyed and forgotten at the end."""
import glob
import os
import secrets
from typing import Callable, Optional

from pulumi import automation as auto


def private_backend(work: str) -> dict[str, str]:
    """A file backend in `work` and a passphrase of this run only."""
    os.makedirs(f"{work}/state", exist_ok=True)
    return {"PULUMI_BACKEND_URL": f"file://{work}/state", "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16)}


class ThrowawayStack:
    def __init__(self, work_dir: str, env: dict[str, str], program: Optional[Callable[[], None]] = None,
                 project_name: str = "", name: str = ""):
        """`work_dir`: the program's folder (with its Pulumi.yaml), or, with `program`, where that function's
        project keeps its files; `env`: the backend and passphrase (private_backend, or the caller's)."""
        self.name = name or f"t{secrets.token_hex(4)}"
        self.env = env  # the backend and passphrase, for a `pulumi` command run beside the Automation API
        self.backend_dir = env["PULUMI_BACKEND_URL"].removeprefix("file://")
        self.work_dir = work_dir
        if program is None:
            self.stack = auto.create_stack(self.name, work_dir=work_dir, opts=auto.LocalWorkspaceOptions(env_vars=env))
        else:
            self.stack = auto.create_stack(self.name, project_name=project_name, program=program,
                                           opts=auto.LocalWorkspaceOptions(work_dir=work_dir, env_vars=env))

    def up(self, refresh: bool = False) -> auto.UpResult:
        return self.stack.up(refresh=refresh, on_output=lambda _l: None, color="never")

    def changes_of_second_up(self, refresh: bool = False) -> dict[str, int]:
        """What a second `up` (with `refresh`: `up --refresh`, as `make up` runs it) reports, less the resources
        it left unchanged."""
        result = self.up(refresh)
        return {op: n for op, n in (result.summary.resource_changes or {}).items() if op != "same"}

    def stored_text_contains(self, needle: str) -> bool:
        """Whether `needle` is anywhere in the raw state files or this stack's config file."""
        files = glob.glob(os.path.join(self.backend_dir, "**", "*"), recursive=True)
        files.append(os.path.join(self.work_dir, f"Pulumi.{self.name}.yaml"))
        for f in files:
            if os.path.isfile(f) and needle.encode() in open(f, "rb").read():
                return True
        return False

    def destroy(self) -> None:
        self.stack.destroy(on_output=lambda _l: None, color="never")
        self.stack.workspace.remove_stack(self.name)
        config_file = os.path.join(self.work_dir, f"Pulumi.{self.name}.yaml")
        if os.path.exists(config_file):
            os.remove(config_file)
