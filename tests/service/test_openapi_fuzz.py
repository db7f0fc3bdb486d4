"""Property-based run over the published OpenAPI schema (schemathesis + hypothesis): generated requests,
valid and invalid, to every operation as an authenticated user; no 5xx, and responses match their
schema. Starting executions is left out: generated commands would be run for real."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.service.helpers import bearer

pytestmark = pytest.mark.integration


def test_no_server_errors_and_schema_conformance(make_client, issuer):
    client = make_client(rate_limit="100000/minute", import_rate_limit="100000/minute")
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    headers = bearer(issuer, "fuzzer")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) == ("POST", "/api/v2/execution"):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        run()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 8, tested
