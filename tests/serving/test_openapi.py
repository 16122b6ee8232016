"""GET /openapi.json documents every route the REST app answers, and is valid OpenAPI."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import LiveServer

ROUTES = [
    ("get", "/v2"), ("get", "/v2/health/live"), ("get", "/v2/health/ready"),
    ("get", "/v2/models/{m}"), ("get", "/v2/models/{m}/versions/{v}"),
    ("get", "/v2/models/{m}/ready"), ("get", "/v2/models/{m}/versions/{v}/ready"),
    ("post", "/v2/models/{m}/infer"), ("post", "/v2/models/{m}/versions/{v}/infer"),
    ("post", "/v2/models/{m}/generate_stream"), ("post", "/v2/repository/index"),
    ("post", "/v2/repository/models/{m}/load"), ("post", "/v2/repository/models/{m}/unload"),
    ("post", "/v1/models/{m}:predict"), ("get", "/v1/models/{m}"), ("post", "/v1/feedback"),
    ("get", "/api/v1/models/{m}/monitoring"), ("get", "/api/v1/models/{m}/rollout"),
    ("post", "/api/v1/models/{m}/rollout"), ("post", "/api/v1/models/{m}/rollout/{action}"),
    ("get", "/api/v1/models/{m}/retrain"), ("post", "/api/v1/models/{m}/retrain"),
    ("post", "/api/v1/models/{m}/retrain/approve"),
    ("get", "/metrics"), ("get", "/openapi.json"),
]


@pytest.mark.slow
def test_every_route_is_documented(live_server: LiveServer) -> None:
    answer = httpx.get(f"{live_server.url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.1")
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert set(ROUTES) == documented
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', answer.text))
    assert refs <= set(document["components"]["schemas"])
