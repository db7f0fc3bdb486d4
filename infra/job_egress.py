"""Where the service's job pods may connect: nowhere, unless the stack's allowlist says so. A CIDR in the
allowlist never covers the cloud metadata address nor the Kubernetes API server's addresses unless the
rule names exactly (or only) them."""
import ipaddress
from dataclasses import dataclass

METADATA_CIDRS = ("169.254.169.254/32", "fd00:ec2::254/128")  # the clouds' instance metadata services


@dataclass(frozen=True)
class JobEgressRule:
    """Exactly one of `cidr` (a network) or `namespace` (every pod of that namespace); `ports` (TCP and
    UDP) empty: every port."""
    cidr: str = ""
    namespace: str = ""
    ports: tuple[int, ...] = ()

    def __post_init__(self):
        if bool(self.cidr) == bool(self.namespace):
            raise ValueError("a job egress rule names exactly one of cidr or namespace")
        if self.cidr:
            ipaddress.ip_network(self.cidr)  # ValueError when malformed (host bits set included)
        if not all(isinstance(p, int) and 1 <= p <= 65535 for p in self.ports):
            raise ValueError("job egress ports are whole numbers 1-65535")


def egress_rules(rules: list[JobEgressRule], api_server_cidrs: list[str]) -> list[dict]:
    """The NetworkPolicy `egress` list for the rules: empty (no connection at all) when there are none."""
    never = [ipaddress.ip_network(c) for c in (*METADATA_CIDRS, *api_server_cidrs)]
    out: list[dict] = []
    for rule in rules:
        ports = [{"protocol": proto, "port": p} for p in rule.ports for proto in ("TCP", "UDP")]
        if rule.cidr:
            net = ipaddress.ip_network(rule.cidr)
            # Inside the rule's network and not all of it: cut out. (A rule that names such an address
            # itself, or a network inside it, is that address listed.)
            excluded = sorted({str(n) for n in never if _inside(n, net) and n != net})
            peer: dict = {"ipBlock": {"cidr": str(net), **({"except": excluded} if excluded else {})}}
        else:
            peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rule.namespace}}}
        out.append({"to": [peer], **({"ports": ports} if ports else {})})
    return out


def _inside(small: "ipaddress.IPv4Network | ipaddress.IPv6Network",
            big: "ipaddress.IPv4Network | ipaddress.IPv6Network") -> bool:
    return small.version == big.version and small.subnet_of(big)  # type: ignore[arg-type]
