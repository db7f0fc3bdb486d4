"""The shared test bed of the tests and the benchmarks: real servers on loopback (OpenBao dev servers
and a 3-node TLS Raft cluster, PostgreSQL, a Kubernetes API server), a JWT issuer, the service as its
own process, throwaway stacks and the dashboard's browser.

Every process it starts is registered in `devkit.procs`, which stops what is still running at the end
of a test run, also an interrupted one (tests/conftest.py), and at interpreter exit.
"""
