"""DigitalOcean's OpenAPI spec as a contract: load it, resolve `$ref`s, check exchanges.

`Spec` reads the registry operations from `../shared/digitalocean-openapi` (YAML, one file per
operation, `$ref`s relative to each file). `json_schema` turns an OpenAPI 3.0 schema into JSON
Schema (nullable, example, readOnly, ...). `check_request` / `check_response` list every way
one recorded exchange departs from its operation: method and path, path and query parameters,
request body, status code, response body (types, enums, required fields, and fields the spec
does not declare), and the ratelimit headers.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.parse
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from analyzer.engines.digitalocean.client import ENDPOINTS, Endpoint

# The official spec lives beside the clone (../shared/digitalocean-openapi), as the project's
# machines and CI lay it out; RECLAIM_DO_SPEC points elsewhere (the folder holding README.md
# and specification/). A missing spec fails the contract tests: they are never skipped.
SPEC_ROOT = (
    Path(
        os.environ.get("RECLAIM_DO_SPEC")
        or Path(__file__).resolve().parents[2] / "shared" / "digitalocean-openapi"
    )
    / "specification"
)
REGISTRY = SPEC_ROOT / "resources" / "registry"
_DROP = {
    "example",
    "examples",
    "description",
    "readOnly",
    "writeOnly",
    "deprecated",
    "nullable",
    "xml",
    "externalDocs",
    "discriminator",
}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


@cache
def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _pointer(doc: Any, pointer: str) -> Any:
    for part in [p for p in pointer.split("/") if p]:
        doc = doc[part.replace("~1", "/").replace("~0", "~")]
    return doc


def resolve(node: Any, base: Path, depth: int = 0) -> Any:
    """`node` with every `$ref` replaced by what it points to (files relative to `base`)."""
    if depth > 50:
        raise ValueError(f"$ref nesting too deep at {base}")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, _, pointer = ref.partition("#")
            file = (base.parent / target).resolve() if target else base
            return resolve(_pointer(_load(file), pointer), file, depth + 1)
        return {k: resolve(v, base, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(x, base, depth) for x in node]
    return node


class Spec:
    def __init__(self, root: Path = REGISTRY) -> None:
        self.root = root

    def operation(self, name: str) -> dict[str, Any]:
        path = self.root / f"{name}.yml"
        op = resolve(_load(path), path)
        assert isinstance(op, dict)
        return op

    def parameters(self, name: str, where: str) -> dict[str, dict[str, Any]]:
        return {
            p["name"]: p for p in self.operation(name).get("parameters", []) if p["in"] == where
        }

    def request_schema(self, endpoint: Endpoint) -> tuple[dict[str, Any] | None, bool]:
        """(body schema, required) for this endpoint (from `body_from` when the spec puts it
        on another operation)."""
        op = self.operation(endpoint.body_from or endpoint.operation)
        body = op.get("requestBody")
        if not body:
            return None, False
        return body["content"]["application/json"]["schema"], bool(body.get("required"))

    def curl(self, name: str) -> list[tuple[str, str]]:
        """(method, URL) of each cURL code sample of an operation."""
        out = []
        for sample in self.operation(name).get("x-codeSamples", []):
            if not str(sample.get("lang", "")).startswith("cURL"):
                continue
            words = shlex.split(sample["source"].replace("\\\n", " "))
            method = words[words.index("-X") + 1]
            url = next(w for w in words if w.startswith("http"))
            out.append((method, url))
        return out


def json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: nullable becomes a null type, annotations go."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: json_schema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = json_schema(value)
        else:
            out[key] = value
    if schema.get("nullable") and "type" in out:
        kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*kinds, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _declared(schema: Any) -> dict[str, list[Any]]:
    """Property name -> its schemas, across allOf/anyOf/oneOf branches."""
    props: dict[str, list[Any]] = {}
    if not isinstance(schema, dict):
        return props
    for name, sub in (schema.get("properties") or {}).items():
        props.setdefault(name, []).append(sub)
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            for name, subs in _declared(branch).items():
                props.setdefault(name, []).extend(subs)
    return props


def _items(schema: Any) -> list[Any]:
    if not isinstance(schema, dict):
        return []
    out = [schema["items"]] if "items" in schema else []
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            out.extend(_items(branch))
    return out


def undeclared(instance: Any, schemas: list[Any], where: str = "$") -> list[str]:
    """Fields of `instance` that no schema declares (an object declaring none is open)."""
    problems: list[str] = []
    if isinstance(instance, dict):
        props: dict[str, list[Any]] = {}
        for s in schemas:
            for name, subs in _declared(s).items():
                props.setdefault(name, []).extend(subs)
        for key, value in instance.items():
            if props and key not in props:
                problems.append(f"{where}.{key} is not in the spec")
            problems.extend(undeclared(value, props.get(key, []), f"{where}.{key}"))
    elif isinstance(instance, list):
        items = [i for s in schemas for i in _items(s)]
        for n, value in enumerate(instance):
            problems.extend(undeclared(value, items, f"{where}[{n}]"))
    return problems


def validate(instance: Any, schema: Any, what: str) -> list[str]:
    validator = jsonschema.Draft7Validator(json_schema(schema), format_checker=FORMATS)
    problems = [
        f"{what}: {'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]
    problems += [f"{what}: {p}" for p in undeclared(instance, [schema])]
    return problems


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        return int(value) if re.fullmatch(r"-?\d+", value) else value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def template_regex(template: str) -> re.Pattern[str]:
    regex = "^" + re.escape(template)
    for name in re.findall(r"\{(\w+)\}", template):
        regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>[^/]+)")
    return re.compile(regex + "$")


def check_request(spec: Spec, endpoint_name: str | None, ex: Any) -> list[str]:
    """How the recorded request `ex` (tests/do_server.Exchange) departs from the spec."""
    if endpoint_name is None:
        return [f"{ex.method} {ex.path}: matches no operation of the spec"]
    endpoint = ENDPOINTS[endpoint_name]
    what = f"{ex.method} {ex.path}"
    problems = []
    if ex.method != endpoint.method:
        problems.append(f"{what}: {endpoint.operation} is a {endpoint.method}")
    m = template_regex(endpoint.path).match(ex.path)
    path_params = spec.parameters(endpoint.operation, "path")
    if m is None:
        return [*problems, f"{what}: path does not match {endpoint.path}"]
    if set(m.groupdict()) != set(path_params):
        problems.append(
            f"{what}: path parameters {sorted(m.groupdict())} != spec {sorted(path_params)}"
        )
    for name, raw in m.groupdict().items():
        value = urllib.parse.unquote(raw)
        if "/" in value and "%2F" not in raw.upper():
            problems.append(f"{what}: {name} must send '/' as %2F")
        if name in path_params:
            problems += validate(value, path_params[name]["schema"], f"{what} {name}")
    query_params = spec.parameters(endpoint.operation, "query")
    for name, values in ex.query.items():
        if name not in query_params:
            problems.append(f"{what}: query parameter {name!r} is not in the spec")
            continue
        if len(values) != 1:
            problems.append(f"{what}: query parameter {name!r} given {len(values)} times")
        schema = query_params[name]["schema"]
        problems += validate(_coerce(values[-1], schema), schema, f"{what} ?{name}")
    schema, required = spec.request_schema(endpoint)
    if ex.body is not None and schema is None:
        problems.append(f"{what}: sends a body the spec does not define")
    if ex.body is None and required:
        problems.append(f"{what}: the spec requires a body")
    if ex.body is not None and schema is not None:
        problems += validate(ex.body, schema, f"{what} body")
        if not (ex.content_type or "").startswith("application/json"):
            problems.append(f"{what}: body without Content-Type application/json")
    if ex.authorization != "bearer":
        problems.append(f"{what}: no Bearer token (the spec's bearer_auth)")
    return problems


def check_response(spec: Spec, endpoint_name: str, ex: Any) -> list[str]:
    """How the recorded answer departs from the operation's responses."""
    endpoint = ENDPOINTS[endpoint_name]
    op = spec.operation(endpoint.operation)
    what = f"{ex.method} {ex.path} -> {ex.status}"
    responses = op["responses"]
    response = responses.get(str(ex.status)) or responses.get("default")
    if response is None:
        return [f"{what}: status not in the spec"]
    problems = []
    content = response.get("content")
    if content:
        schema = content["application/json"]["schema"]
        if ex.response is None:
            problems.append(f"{what}: no body where the spec gives one")
        else:
            problems += validate(ex.response, schema, what)
    elif ex.response is not None:
        problems.append(f"{what}: a body where the spec gives none")
    sent = {k.lower(): v for k, v in ex.headers.items()}
    for name, header in (response.get("headers") or {}).items():
        if name.lower() not in sent:
            problems.append(f"{what}: header {name} missing")
            continue
        problems += validate(
            _coerce(sent[name.lower()], header["schema"]), header["schema"], f"{what} {name}"
        )
    return problems
