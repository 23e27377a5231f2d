"""`/openapi.json`: every route described, and a property-based run against it.

schemathesis generates requests from the document for every operation, sends them to
the running gateway with a valid login token and the internal secret, and checks that
nothing answers 5xx and that every answer matches its documented schema.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from proxy.app import create_app
from proxy.core.config import Settings
from proxy.http.openapi import HIDDEN_BLUEPRINTS, ROUTES
from tests.conftest import INTERNAL_SECRET, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import EMAIL, ask_code, person, poll

OFF_WITHOUT_PAYMENTS = ("/api/v1/topup", "/api/v1/payments/stripe/webhook")
EXAMPLES = 25  # per operation: bounded, so the suite stays fast
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def test_every_api_route_is_described(gateway_settings: Settings) -> None:
    app = create_app(gateway_settings)
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    api = {
        e for e in endpoints
        if e.split(".")[0] not in ("openapi", "swagger_ui", "admin", *HIDDEN_BLUEPRINTS)
    }  # fmt: skip
    assert api - set(ROUTES) == set(), "describe these routes in proxy/http/openapi.py"
    assert set(ROUTES) - api == set(), "these described routes no longer exist"


async def test_openapi_document_and_a_fuzzed_run_against_it(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        document = (await client.get("/openapi.json")).json()
        assert document["openapi"].startswith("3.1")
        paths = document["paths"]
        for path in ("/v1/chat/completions", "/v1/models", "/api/v1/me", "/api/v1/me/keys",
                     "/api/v1/usage", "/oauth/token", "/api/v1/admin/users"):  # fmt: skip
            assert path in paths, path
        assert set(document["components"]["securitySchemes"]) == {"bearer", "internalSecret"}
        assert paths["/api/v1/me"]["get"]["security"] == [{"bearer": []}]
        viewer = await client.get("/docs")
        assert viewer.status_code == 200 and "/openapi.json" in viewer.text

        await person(gateway)
        code = await ask_code(client)
        await gateway.services.device_flow.approve_as(code["user_code"], EMAIL)
        token = (await poll(client, code["device_code"])).json()["access_token"]
        headers = {"authorization": f"Bearer {token}", "x-internal-secret": INTERNAL_SECRET}
        failures = await trio.to_thread.run_sync(fuzz, document, gateway.url, headers)
        assert failures == [], "\n\n".join(failures)


def fuzz(document: dict[str, Any], url: str, headers: dict[str, str]) -> list[str]:
    """Every operation, `EXAMPLES` generated requests each; what went wrong, per operation."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/chat/completions":
            continue  # served by the edge; its own tests drive it with the official SDKs
        try:
            run_operation(operation, url, headers)
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!r}"[:3000])
    return failures


def run_operation(operation: Any, url: str, headers: dict[str, str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        if operation.path in OFF_WITHOUT_PAYMENTS:  # 503 by design: payments are not set up
            assert response.status_code in (400, 503), response.text
            case.validate_response(response, checks=CHECKS[1:])
            return
        case.validate_response(response, checks=CHECKS)

    check()
