"""Object metadata shared by the Kubernetes components."""


def annotated(annotations: dict) -> dict:
    """`{"annotations": ...}` only when there are some: the API server drops an empty map, and a Secret
    whose inputs still carry one would show as changed on every `up`."""
    return {"annotations": annotations} if annotations else {}
