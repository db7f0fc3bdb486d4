"""The project's `existing` composition (stacks/existing.py), as a separate project so test stacks and
their config files stay out of the repository root."""
from stacks import existing

existing.deploy()
