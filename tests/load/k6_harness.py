"""Run the k6 scripts in load/ under node with stand-in k6 modules (tests/load/k6shim), against a
simulated sumflow whose gRPC methods/fields come from the real proto and whose HTTP paths,
parameters and response shapes come from the accumulator's real OpenAPI document."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
LOAD_DIR = REPO / "load"
PROTO_ROOT = REPO / "proto"
PROTO_FILE = "sumflow/v1/sum.proto"
SHIM = Path(__file__).resolve().parent / "k6shim"

# k6 built-in metric names (thresholds may name these or the script's own metrics).
K6_BUILTIN_METRICS = {
    "checks",
    "data_received",
    "data_sent",
    "dropped_iterations",
    "grpc_req_duration",
    "grpc_streams",
    "grpc_streams_msgs_received",
    "grpc_streams_msgs_sent",
    "http_req_blocked",
    "http_req_connecting",
    "http_req_duration",
    "http_req_failed",
    "http_req_receiving",
    "http_req_sending",
    "http_req_tls_handshaking",
    "http_req_waiting",
    "http_reqs",
    "iteration_duration",
    "iterations",
    "vus",
    "vus_max",
}

_PROTO_TYPES = {
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
}


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Debian package nodejs) is required for the k6 script checks")
    return node


def proto_model() -> dict[str, Any]:
    """Compile the proto with protoc and describe every method: full name -> input/output fields."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--descriptor_set_out={out}", "--include_imports", PROTO_FILE])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO_FILE}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    messages: dict[str, list[dict[str, str]]] = {}
    methods: dict[str, dict[str, Any]] = {}
    for file in fds.file:
        for msg in file.message_type:
            messages[f".{file.package}.{msg.name}"] = [
                {"name": f.name, "json_name": f.json_name, "type": _PROTO_TYPES.get(f.type, f"type{f.type}")}
                for f in msg.field
            ]
    for file in fds.file:
        for service in file.service:
            for method in service.method:
                methods[f"{file.package}.{service.name}/{method.name}"] = {
                    "input": messages[method.input_type],
                    "output": messages[method.output_type],
                }
    return {"methods": methods}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"external $ref {ref} not supported")
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def example_from_schema(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A minimal instance of a schema (every property, one array item, examples when given)."""
    schema = _resolve(doc, schema)
    if "example" in schema:
        return schema["example"]
    for combo in ("allOf", "oneOf", "anyOf"):
        if combo in schema:
            if combo == "allOf":
                merged: dict[str, Any] = {}
                for part in schema["allOf"]:
                    value = example_from_schema(doc, part)
                    if isinstance(value, dict):
                        merged.update(value)
                return merged
            return example_from_schema(doc, schema[combo][0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: example_from_schema(doc, sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_from_schema(doc, schema.get("items", {}))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "string":
        if "enum" in schema:
            return schema["enum"][0]
        return {"date-time": "2025-01-01T00:00:00Z", "uuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}.get(
            schema.get("format", ""), "text"
        )
    return None


def _response_spec(doc: dict[str, Any], status: str, response: dict[str, Any]) -> dict[str, Any]:
    response = _resolve(doc, response)
    content = response.get("content", {})
    if not content:
        return {"status": status, "content_type": "text/plain", "body": ""}
    content_type = next(iter(content))
    schema = content[content_type].get("schema", {})
    return {"status": status, "content_type": content_type, "body": example_from_schema(doc, schema)}


def openapi_model(doc: dict[str, Any], base: str) -> dict[str, Any]:
    """Routes of an OpenAPI 3 document: path -> method -> parameters and example responses."""
    routes = []
    default_errors: dict[str, dict[str, Any]] = {}
    for path, item in doc["paths"].items():
        methods = {}
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            params = [_resolve(doc, p) for p in [*shared, *op.get("parameters", [])]]
            responses = {str(code): _response_spec(doc, str(code), r) for code, r in op.get("responses", {}).items()}
            if "default" in responses:
                default_errors.setdefault("default", responses["default"])
            methods[method] = {
                "params": [{"name": p["name"], "in": p["in"], "schema": p.get("schema", {})} for p in params],
                "responses": responses,
            }
        routes.append({"path": path, "methods": methods})
    return {
        "base": base,
        "routes": routes,
        "not_found": {**default_errors["default"], "status": "404"},
        "method_not_allowed": {**default_errors["default"], "status": "405"},
    }


def run_script(
    script: str,
    *,
    env: dict[str, str],
    iterations: int,
    rest: dict[str, Any],
    faults: tuple[str, ...] = (),
    timeout: float = 60,
) -> dict[str, Any]:
    """Run load/<script> under the shim; returns the runner's report (see runner.mjs)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        config = {
            "script": str(LOAD_DIR / script),
            "env": env,
            "iterations": iterations,
            "report": str(report),
            "faults": list(faults),
            "grpc": proto_model(),
            "rest": rest,
        }
        cfg = Path(tmp) / "config.json"
        cfg.write_text(json.dumps(config))
        proc = subprocess.run(
            [node_binary(), "--import", str(SHIM / "register.mjs"), str(SHIM / "runner.mjs"), str(cfg)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not report.exists():
            raise AssertionError(f"runner failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(report.read_text())


def threshold_metric(expr_key: str) -> str:
    """'grpc_req_duration{kind:fresh}' -> 'grpc_req_duration'."""
    return expr_key.split("{", 1)[0]
