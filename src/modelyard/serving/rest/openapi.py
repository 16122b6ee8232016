"""The OpenAPI 3.1 document of every REST route, served at ``GET /openapi.json``.

Written by hand next to the routes in :mod:`.app` (no framework generates it on the hot path);
``tests/serving/test_openapi.py`` checks that each route the app answers is documented.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "examples": ["FP64", "INT64", "BYTES", "BOOL"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object",
                       "properties": {"timeout": {"type": "integer", "description": "µs"}}},
        "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}},
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
    },
}
_WINDOW = {
    "type": "object",
    "description": "The monitor's verdict on one window of one model version.",
    "properties": {
        "model": {"type": "string"}, "version": {"type": "integer"},
        "window_start": {"type": "string", "format": "date-time"},
        "window_end": {"type": "string", "format": "date-time"},
        "rows": {"type": "integer"}, "requests": {"type": "integer"},
        "errors": {"type": "integer"}, "error_rate": {"type": "number"},
        "latency_p99_s": {"type": ["number", "null"]},
        "dataset_drift": {"type": "boolean"}, "drift_share": {"type": "number"},
        "prediction_drift": {"type": "boolean"},
        "columns": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"},
            "role": {"type": "string", "enum": ["feature", "prediction", "probability"]},
            "method": {"type": ["string", "null"]}, "score": {"type": ["number", "null"]},
            "threshold": {"type": ["number", "null"]}, "drift_detected": {"type": "boolean"},
        }}},
        "quality": {"type": "array", "items": {"type": "object"}},
        "quality_violations": {"type": "integer"},
        "performance": {"type": "object"},
    },
}


def _json(schema: dict[str, Any] | str, description: str = "OK") -> dict[str, Any]:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json("Error", "error") for code in codes}


_M = {"name": "m", "in": "path", "required": True, "schema": {"type": "string"},
      "description": "a model name (its champion, else its newest version) or name@alias"}
_V = {"name": "v", "in": "path", "required": True, "schema": {"type": "string"}}


def _infer(summary: str, with_version: bool) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "parameters": [_M, _V] if with_version else [_M],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                         "description": "the binary tensor data extension"},
        }},
        "responses": {"200": _json("InferResponse"), **_errors(400, 404, 413, 503, 504)},
    }}


def _get(summary: str, schema: dict[str, Any] | str, params: list[Any] | None = None,
         errors: tuple[int, ...] = (404,)) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [],
                    "responses": {"200": _json(schema), **_errors(*errors)}}}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of the server's REST routes."""
    empty = {"description": "OK (ready) or 503 (not ready)"}
    health = {"get": {"summary": "health", "responses": {"200": empty, "503": empty}}}
    monitoring = _get(
        "the monitor's window results for a model, oldest first",
        {"type": "object", "properties": {
            "model": {"type": "string"}, "since": {"type": ["string", "null"]},
            "windows": {"type": "array", "items": {"$ref": "#/components/schemas/Window"}}}},
        [_M, {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
              "description": "30m, 24h, 7d or an ISO-8601 time; every window when left out"}],
        (400, 404, 503),
    )
    rollout_body = {"type": "object", "required": ["candidate"], "properties": {
        "candidate": {"type": "integer"},
        "strategy": {"enum": ["canary", "bluegreen", "shadow", "ab"]},
        "steps": {"oneOf": [{"type": "array", "items": {"type": "number"}},
                            {"type": "string"}]},
        "step_duration": {"oneOf": [{"type": "number"}, {"type": "string"}],
                          "description": "seconds, or 90s, 10m, 2h"},
        "analysis": {"type": "object", "description": '{"checks": [...]}'},
        "sticky": {"type": "string", "description": "a header, or parameter:NAME"},
        "baseline": {"type": "integer"}}}
    rollout_answer = _json({"type": "object", "properties": {
        "model": {"type": "string"}, "rollout": {"type": ["object", "null"]}}})
    rollout = {
        "get": {"summary": "the model's active (else latest) rollout and its recent events",
                "parameters": [_M], "responses": {"200": rollout_answer, **_errors(404, 503)}},
        "post": {"summary": "start a rollout", "parameters": [_M],
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": rollout_body}}},
                 "responses": {"200": rollout_answer, **_errors(400, 404, 409, 503)}},
    }
    steer = {"post": {
        "summary": "promote, pause, resume, rollback or abort the model's active rollout",
        "parameters": [_M, {"name": "action", "in": "path", "required": True, "schema": {
            "enum": ["promote", "pause", "resume", "rollback", "abort"]}}],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"reason": {"type": "string"}}}}}},
        "responses": {"200": rollout_answer, **_errors(400, 404, 409, 503)},
    }}
    run_answer = _json({"type": "object", "properties": {
        "model": {"type": "string"}, "run": {"type": "object"}}})
    retrain = {
        "get": {"summary": "the model's recent retraining runs, newest first",
                "parameters": [_M], "responses": {"200": _json({"type": "object", "properties": {
                    "model": {"type": "string"}, "runs": {"type": "array"}}}),
                    **_errors(404, 503)}},
        "post": {"summary": "retrain now (in the background), or with dry_run what a run "
                            "would do",
                 "parameters": [_M],
                 "requestBody": {"required": False, "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"dry_run": {"type": "boolean"},
                                                      "reason": {"type": "string"}}}}}},
                 "responses": {"202": run_answer,
                               "200": _json({"type": "object", "properties": {
                                   "model": {"type": "string"}, "plan": {"type": "object"}}}),
                               **_errors(400, 404, 409, 503)}},
    }
    approve = {"post": {
        "summary": "start the rollout of a retrained candidate awaiting approval, or decline it",
        "parameters": [_M],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"run": {"type": "integer"},
                                             "decline": {"type": "boolean"},
                                             "reason": {"type": "string"}}}}}},
        "responses": {"200": run_answer, **_errors(400, 404, 409, 503)},
    }}
    feedback = {"post": {
        "summary": "delayed labels for earlier predictions, by request id (idempotent)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "array", "items": {"type": "object", "required": ["id", "label"],
                                       "properties": {"id": {"type": "string"}, "label": {}}}}}}},
        "responses": {"200": _json({"type": "object"}), **_errors(400, 503)},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelyard", "version": version,
                 "description": "Open Inference Protocol (KServe V2), KServe V1, Triton's "
                                "repository extension, feedback, monitoring, rollouts and "
                                "retraining."},
        "paths": {
            "/v2": _get("server metadata", {"type": "object"}, errors=()),
            "/v2/health/live": health,
            "/v2/health/ready": health,
            "/v2/models/{m}": _get("model metadata", {"type": "object"}, [_M]),
            "/v2/models/{m}/versions/{v}": _get("version metadata", {"type": "object"}, [_M, _V]),
            "/v2/models/{m}/ready": {"get": {"summary": "model readiness", "parameters": [_M],
                                             "responses": {"200": empty, "503": empty}}},
            "/v2/models/{m}/versions/{v}/ready": {"get": {
                "summary": "version readiness", "parameters": [_M, _V],
                "responses": {"200": empty, "503": empty}}},
            "/v2/models/{m}/infer": _infer("inference", False),
            "/v2/models/{m}/versions/{v}/infer": _infer("inference on one version", True),
            "/v2/models/{m}/generate_stream": {"post": {
                "summary": "server-sent events, one per chunk a streaming model yields",
                "parameters": [_M],
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/InferRequest"}}}},
                "responses": {"200": {"description": "text/event-stream"},
                              **_errors(400, 404)}}},
            "/v2/repository/index": {"post": {"summary": "every model version and its state",
                                              "responses": {"200": _json({"type": "array"})}}},
            "/v2/repository/models/{m}/load": {"post": {
                "summary": "load (or reload) a model", "parameters": [_M],
                "responses": {"200": {"description": "loaded"}, **_errors(404, 503)}}},
            "/v2/repository/models/{m}/unload": {"post": {
                "summary": "unload a model", "parameters": [_M],
                "responses": {"200": {"description": "unloaded"}, **_errors(404)}}},
            "/v1/models/{m}:predict": {"post": {
                "summary": "KServe V1 / TF-Serving predict", "parameters": [_M],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {"instances": {"type": "array"}}}}}},
                "responses": {"200": _json({"type": "object", "properties": {
                    "predictions": {"type": "array"}}}), **_errors(400, 404, 503)}}},
            "/v1/models/{m}": _get("KServe V1 model status", {"type": "object"}, [_M]),
            "/v1/feedback": feedback,
            "/api/v1/models/{m}/monitoring": monitoring,
            "/api/v1/models/{m}/rollout": rollout,
            "/api/v1/models/{m}/rollout/{action}": steer,
            "/api/v1/models/{m}/retrain": retrain,
            "/api/v1/models/{m}/retrain/approve": approve,
            "/metrics": {"get": {"summary": "Prometheus text format",
                                 "responses": {"200": {"description": "text/plain"}}}},
            "/openapi.json": {"get": {"summary": "this document",
                                      "responses": {"200": _json({"type": "object"})}}},
        },
        "components": {"schemas": {"Error": _ERROR, "Tensor": _TENSOR,
                                   "InferRequest": _INFER_REQUEST,
                                   "InferResponse": _INFER_RESPONSE, "Window": _WINDOW}},
    }
