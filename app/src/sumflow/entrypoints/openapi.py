"""The OpenAPI 3.0 document of the accumulator's HTTP API, served at /api/openapi.json.

It describes every route, parameter, response body and error exactly as the bottle app produces
them, so schemathesis (and the k6 scripts' checks) can be run against it.
"""

from __future__ import annotations

from typing import Any

import sumflow

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


_DEFAULT_ERROR = _json("Error", "Any other error (unknown path 404, wrong method 405), as JSON")


def _get(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "responses": {**responses, "default": _DEFAULT_ERROR},
            **extra,
        }
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "sumflow accumulator",
            "version": sumflow.__version__,
            "description": "Running total of the summation events consumed from Kafka, applied exactly once.",
        },
        "paths": {
            "/api/total": _get(
                "getTotal",
                "The running total and the number of events applied",
                {"200": _json("Total", "The latest committed total")},
            ),
            "/api/summations": _get(
                "listSummations",
                "The most recently applied events, newest first",
                {
                    "200": _json("SummationList", "Applied events, newest first"),
                    "400": _json("Error", "limit is not an integer between 1 and 1000"),
                    "503": _json("Error", "The state database cannot be read right now"),
                },
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "How many events to return (default 20)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                    }
                ],
            ),
            "/api/final": _get(
                "getFinal",
                "The bare total as plain text (compatible with the original service)",
                {
                    "200": {
                        "description": "The total, a decimal integer",
                        "content": {"text/plain": {"schema": {"type": "string", "pattern": "^-?[0-9]+$"}}},
                    }
                },
            ),
            "/healthz": _get(
                "getHealth",
                "Liveness: the process serves HTTP and its consumer progresses (or has nothing pending)",
                {
                    "200": _json("Health", "Alive"),
                    "503": _json("Health", "Consumer stalled for SUMFLOW_STALL_SECONDS, with the reason"),
                },
            ),
            "/readyz": _get(
                "getReadiness",
                "Readiness: state loaded, partitions assigned, last commit succeeded",
                {
                    "200": _json("Readiness", "Ready"),
                    "503": _json("Readiness", "Not ready, with the reason"),
                },
            ),
            "/metrics": _get(
                "getMetrics",
                "Prometheus metrics (OpenMetrics with exemplars when the Accept header asks for it)",
                {
                    "200": {
                        "description": "Metrics exposition",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            ),
            "/api/openapi.json": _get(
                "getOpenApi",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.0 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            ),
        },
        "components": {
            "schemas": {
                "Total": {
                    "type": "object",
                    "required": ["total", "applied"],
                    "additionalProperties": False,
                    "properties": {
                        "total": {"type": "integer", "description": "Sum of all applied results (may exceed int64)"},
                        "applied": {"type": "integer", "minimum": 0, "description": "Events applied"},
                    },
                },
                "Summation": {
                    "type": "object",
                    "required": [
                        "request_id",
                        "first_number",
                        "second_number",
                        "result",
                        "partition",
                        "offset",
                        "applied_at",
                        "produced_at_ms",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "request_id": {"type": "string", "format": "uuid"},
                        "first_number": {"type": "integer", "format": "int64"},
                        "second_number": {"type": "integer", "format": "int64"},
                        "result": {"type": "integer", "format": "int64"},
                        "partition": {"type": "integer", "minimum": 0},
                        "offset": {"type": "integer", "minimum": 0},
                        "applied_at": {"type": "string", "format": "date-time"},
                        "produced_at_ms": {"type": "integer", "format": "int64"},
                    },
                },
                "SummationList": {
                    "type": "object",
                    "required": ["summations", "limit"],
                    "additionalProperties": False,
                    "properties": {
                        "summations": {"type": "array", "items": {"$ref": "#/components/schemas/Summation"}},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "unhealthy"]},
                        "reason": {"type": "string"},
                    },
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"type": "string", "enum": ["ready", "not_ready"]},
                        "reason": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["status", "error", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"type": "integer", "minimum": 400, "maximum": 599},
                        "error": {"type": "string", "description": "HTTP reason phrase"},
                        "message": {"type": "string"},
                    },
                },
            }
        },
    }
