"""Pulumi dynamic resources for Vault (hvac) and the container engine (docker SDK).

The pulumi-vault and pulumi-docker provider plugins cannot be built on these machines: the Go module
proxy refuses their provider modules at every version (see docs/toolchain.md). These resources are
real Pulumi resources run by the engine's Python dynamic-provider host: create, diff, update, read
(refresh and drift) and delete against the live server, with state in the stack.
"""
