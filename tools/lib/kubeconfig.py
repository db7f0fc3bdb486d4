"""A stack's `kubeconfig` setting (a path, relative to the project directory, or the file's content) made
the cluster of `pulumi` and of this process: the one place that turns it into KUBECONFIG. Dynamic providers
(the prod bootstrap reaching the pods through the Kubernetes API) run in a process of their own under the
CLI's environment, so `pulumi` needs KUBECONFIG; the tools reach the pods with the same kubeconfig."""
import contextlib
import os
import tempfile
from typing import Iterator, Optional

from infra.clients import kube_forward
from tools.lib.stack_outputs import KUBECONFIG, stack_setting


def is_kubeconfig_content(value: str) -> bool:
    """Whether a `kubeconfig` setting is the file's content (YAML or JSON) rather than its path."""
    return "\n" in value.strip() or value.lstrip().startswith("{") or "apiVersion:" in value


@contextlib.contextmanager
def kubeconfig_env(stack: str) -> Iterator[dict[str, str]]:
    """The environment for `pulumi`, with KUBECONFIG from the stack's setting when it has one (content:
    a private temporary file, removed afterwards)."""
    env = dict(os.environ)
    value = stack_setting(stack, KUBECONFIG)
    if not value:
        yield env
    elif is_kubeconfig_content(value):
        fd, path = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            yield {**env, "KUBECONFIG": path}
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
    else:
        yield {**env, "KUBECONFIG": os.path.abspath(os.path.expanduser(value))}


def use_stack_kubeconfig(stack: str) -> Optional[str]:
    """This process reaches a prod stack's pods through the Kubernetes API with the stack's kubeconfig
    (none: KUBECONFIG). Returns the kubeconfig used (a path or the content), or None."""
    value = stack_setting(stack, KUBECONFIG)
    if not value:
        return None
    if not is_kubeconfig_content(value):
        value = os.path.abspath(os.path.expanduser(value))
    kube_forward.use_kubeconfig(value)
    return value
