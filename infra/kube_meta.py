"""Object metadata shared by the Kubernetes components."""


def annotated(annotations: dict) -> dict:
    """`{"annotations": ...}` only when there are some: the API server drops an empty map, and a Secret
    whose inputs still carry one would show as changed on every `up`."""
    return {"annotations": annotations} if annotations else {}


# Pod Security Admission: the API server refuses any pod of the namespace that breaks the `restricted`
# profile (non-root, no privilege escalation, every capability dropped, a seccomp profile, no host
# namespaces or paths), and warns and audits at the same level.
POD_SECURITY_RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
