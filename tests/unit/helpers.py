"""Helpers shared by the unit tests (the `mocks` fixture stays in conftest.py)."""
import pulumi


def run(program) -> None:
    """Runs `program` under the mocks and returns once every resource it made is registered."""
    pulumi.runtime.test(program)()
