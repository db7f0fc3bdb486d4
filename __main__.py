"""Pulumi entry point: the stack name picks the composition in stacks/<name>.py."""
import pulumi

from stacks import deploy

deploy(pulumi.get_stack())
