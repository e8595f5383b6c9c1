"""The AWS rest-json protocol, server side: routing, input parsing and validation, and the error shape.

Routes, member locations and constraints come from the service model that ships with botocore (the same
Smithy-generated JSON AWS's own servers are built from), read as data: the routes cannot drift from what
boto3 sends, and the server validates inputs as strictly as the model says even when a client does not.
No botocore code runs here.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import MultiMapping

Shape = dict[str, Any]

# Java's \P{C} (no control or other non-printing characters), as far as Python's re can say it.
_NOT_CONTROL = r"[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"


class ServiceError(Exception):
    """An error the service answers with: code (x-amzn-ErrorType), HTTP status and body members."""

    def __init__(self, code: str, message: str, status: int, **members: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.members = members


def validation_error(message: str, *fields: tuple[str, str]) -> ServiceError:
    return ServiceError(
        "ValidationException",
        message,
        400,
        reason="FIELD_VALIDATION_FAILED",
        fields=[{"name": name, "message": text} for name, text in fields] or None,
    )


def not_found(message: str, resource_id: str, resource_type: str) -> ServiceError:
    return ServiceError("ResourceNotFoundException", message, 404, resourceId=resource_id, resourceType=resource_type)


def access_denied(message: str) -> ServiceError:
    return ServiceError("AccessDeniedException", message, 403)


def error_response(error: ServiceError, request_id: str) -> web.Response:
    body = {"message": error.message, **{k: v for k, v in error.members.items() if v is not None}}
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id},
    )


def json_response(payload: Mapping[str, Any], request_id: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(_wire(payload)).encode(),
        content_type="application/json",
        headers={"x-amzn-RequestId": request_id},
    )


def _wire(value: Any) -> Any:
    """Python values as rest-json puts them on the wire: timestamps as epoch seconds, blobs as base64."""
    if isinstance(value, Mapping):
        return {key: _wire(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_wire(item) for item in value]
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: re.Pattern[str]
    query_literals: frozenset[str]
    literal_segments: int
    input_shape: str
    response_code: int


class ServiceModel:
    """One AWS service's rest-json model: find the operation for a request and read its input."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.shapes: dict[str, Shape] = document["shapes"]
        self.operations = [_operation(name, spec) for name, spec in document["operations"].items()]
        # Most specific first: `?sync` routes before their bare twins, literal segments before labels.
        self.operations.sort(key=lambda op: (-len(op.query_literals), -op.literal_segments))

    @classmethod
    def load(cls, service: str, version: str) -> ServiceModel:
        spec = importlib.util.find_spec("botocore")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("botocore's data files are needed for the service model")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / service / version / "service-2.json.gz"
        with gzip.open(path) as handle:
            return cls(json.load(handle))

    def match(self, method: str, raw_path: str, query_keys: set[str]) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method != method or not op.query_literals <= query_keys:
                continue
            found = op.path.fullmatch(raw_path)
            if found:
                return op, {key: unquote(value) for key, value in found.groupdict().items()}
        return None

    def parse_input(
        self, op: Operation, labels: Mapping[str, str], query: MultiMapping[str], body: bytes
    ) -> dict[str, Any]:
        """The operation's input, typed and validated; ValidationException lists every broken constraint."""
        shape = self.shapes[op.input_shape]
        document = _json_body(body) if any("location" not in m for m in shape["members"].values()) else {}
        reader = _Reader(self.shapes)
        params: dict[str, Any] = {}
        for name, member in shape["members"].items():
            raw = self._raw_member(member, labels, query, document, name)
            if raw is not None:
                params[name] = reader.read(member["shape"], raw, name, member.get("location"))
        reader.check_required(shape, params, "")
        for name, value in params.items():
            reader.check(shape["members"][name]["shape"], value, name)
        if reader.errors:
            count = len(reader.errors)
            noun = "error" if count == 1 else "errors"
            message = f"{count} validation {noun} detected: " + "; ".join(
                f"Value {_show(value)} at '{path}' failed to satisfy constraint: {text}"
                for path, value, text in reader.errors
            )
            raise validation_error(message, *[(path, text) for path, _, text in reader.errors])
        return params

    def _raw_member(
        self, member: Shape, labels: Mapping[str, str], query: MultiMapping[str], document: Mapping[str, Any], name: str
    ) -> Any:
        location = member.get("location")
        wire_name = member.get("locationName", name)
        if location == "uri":
            return labels.get(wire_name)
        if location == "querystring":
            values = query.getall(wire_name, [])
            if not values:
                return None
            return values if self.shapes[member["shape"]]["type"] == "list" else values[0]
        if location is None:
            return document.get(name)
        return None


def _operation(name: str, spec: Mapping[str, Any]) -> Operation:
    http = spec["http"]
    path, _, query = http["requestUri"].partition("?")
    pattern = ""
    literal_segments = 0
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            label = segment[1:-1]
            greedy = label.endswith("+")
            pattern += f"/(?P<{label.rstrip('+')}>{'.+' if greedy else '[^/]+'})"
        elif segment:
            pattern += "/" + re.escape(segment)
            literal_segments += 1
    literals = frozenset(item.partition("=")[0] for item in query.split("&") if item)
    return Operation(
        name=name,
        method=http["method"],
        path=re.compile(pattern or "/"),
        query_literals=literals,
        literal_segments=literal_segments,
        input_shape=spec["input"]["shape"] if "input" in spec else "",
        response_code=http.get("responseCode", 200),
    )


def _json_body(body: bytes) -> Mapping[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServiceError("SerializationException", f"Could not parse the request body as JSON: {exc}", 400) from exc
    if not isinstance(document, dict):
        raise ServiceError("SerializationException", "The request body must be a JSON object.", 400)
    return document


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return f"'<{len(value)} bytes>'"
    text = str(value)
    return f"'{text if len(text) <= 100 else text[:100] + '...'}'"


class _Reader:
    """Turns wire values into Python values by shape, collecting constraint violations on the way."""

    def __init__(self, shapes: Mapping[str, Shape]) -> None:
        self.shapes = shapes
        self.errors: list[tuple[str, Any, str]] = []

    def read(self, shape_name: str, raw: Any, path: str, location: str | None = None) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if shape.get("document"):  # a JSON document (a plugin field's value): any JSON value, as sent
            return raw
        if kind == "structure":
            return self._structure(shape, self._expect(raw, dict, path), path)
        if kind == "list":
            items = raw if location == "querystring" else self._expect(raw, list, path)
            member = shape["member"]["shape"]
            return [self.read(member, item, f"{path}.{index}.member", location) for index, item in enumerate(items, 1)]
        if kind == "map":
            mapping = self._expect(raw, dict, path)
            return {key: self.read(shape["value"]["shape"], item, f"{path}.{key}") for key, item in mapping.items()}
        return self._scalar(kind, raw, path, location)

    def _structure(self, shape: Shape, raw: Mapping[str, Any], path: str) -> dict[str, Any]:
        value = {
            name: self.read(member["shape"], raw[name], f"{path}.{name}")
            for name, member in shape["members"].items()
            if raw.get(name) is not None
        }
        self.check_required(shape, value, path + ".")
        if shape.get("union") and len(value) != 1:
            self.errors.append((path, None, "Member must have exactly one of its members set"))
        return value

    def _scalar(self, kind: str, raw: Any, path: str, location: str | None) -> Any:
        from_text = location in ("uri", "querystring", "header")
        if kind == "string":
            return self._expect(raw, str, path)
        if kind in ("integer", "long"):
            if from_text:
                return self._parse(int, raw, path)
            if isinstance(raw, bool):
                raise _serialization(path, kind)
            return self._expect(raw, int, path)
        if kind in ("float", "double"):
            return self._parse(float, raw, path) if from_text else float(self._expect(raw, int | float, path))
        if kind == "boolean":
            if from_text:
                return raw == "true"
            return self._expect(raw, bool, path)
        if kind == "timestamp":
            return _timestamp(raw, path)
        if kind == "blob":
            return _blob(raw, path)
        return raw

    def _expect(self, raw: Any, kind: Any, path: str) -> Any:
        if not isinstance(raw, kind):
            raise _serialization(path, getattr(kind, "__name__", str(kind)))
        return raw

    def _parse(self, convert: Any, raw: Any, path: str) -> Any:
        try:
            return convert(raw)
        except (TypeError, ValueError) as exc:
            raise _serialization(path, convert.__name__) from exc

    def check_required(self, shape: Shape, value: Mapping[str, Any], prefix: str) -> None:
        for name in shape.get("required", []):
            if value.get(name) is None:
                self.errors.append((prefix + name, None, "Member must not be null"))

    def check(self, shape_name: str, value: Any, path: str) -> None:
        """Length, range, enum and pattern constraints, recursively."""
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if shape.get("document"):
            return
        if kind == "structure":
            for name, member in shape["members"].items():
                if name in value:
                    self.check(member["shape"], value[name], f"{path}.{name}")
            return
        if kind == "list":
            for index, item in enumerate(value, 1):
                self.check(shape["member"]["shape"], item, f"{path}.{index}.member")
        if kind == "map":
            for key, item in value.items():
                self.check(shape["value"]["shape"], item, f"{path}.{key}")
        self._check_bounds(shape, value, path)
        if kind == "string":
            self._check_text(shape, value, path)

    def _check_bounds(self, shape: Shape, value: Any, path: str) -> None:
        size = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if isinstance(value, str | bytes | list | dict):
            size = len(value)
        if size is None:
            return
        measure = "value" if isinstance(value, int | float) else "length"
        if "min" in shape and size < shape["min"]:
            self.errors.append((path, value, f"Member must have {measure} greater than or equal to {shape['min']}"))
        if "max" in shape and size > shape["max"]:
            self.errors.append((path, value, f"Member must have {measure} less than or equal to {shape['max']}"))

    def _check_text(self, shape: Shape, value: str, path: str) -> None:
        if "enum" in shape and value not in shape["enum"]:
            allowed = ", ".join(shape["enum"])
            self.errors.append((path, value, f"Member must satisfy enum value set: [{allowed}]"))
        pattern = shape.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            self.errors.append((path, value, f"Member must satisfy regular expression pattern: {pattern}"))


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(java_regex: str) -> re.Pattern[str]:
    if java_regex not in _PATTERNS:
        _PATTERNS[java_regex] = re.compile(java_regex.replace(r"\P{C}", _NOT_CONTROL), re.DOTALL)
    return _PATTERNS[java_regex]


def _serialization(path: str, expected: str) -> ServiceError:
    return ServiceError("SerializationException", f"Expected {expected} at '{path}'.", 400)


def _timestamp(raw: Any, path: str) -> datetime:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise _serialization(path, "timestamp") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise _serialization(path, "timestamp")


def _blob(raw: Any, path: str) -> bytes:
    if not isinstance(raw, str):
        raise _serialization(path, "base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _serialization(path, "base64 string") from exc


def paginate(items: list[Any], params: Mapping[str, Any], default_max: int) -> tuple[list[Any], str | None]:
    """One page of a list operation; the opaque nextToken is the offset of the next item."""
    token = params.get("nextToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise validation_error("The nextToken is not valid.", ("nextToken", "invalid pagination token")) from exc
    size = params.get("maxResults") or default_max
    page = items[start : start + size]
    more = start + size < len(items)
    return page, base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
