"""The one error body of the HTTP server: RFC 9457 ``application/problem+json``.

Every 4xx and 5xx the server sends has this shape (clients depend on it)::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "event 1, field t: missing t",
     "errors": [{"index": 1, "field": "t", "message": "missing t"}]}

``errors`` lists every problem found: ``index`` is the position in a batch (or
null), ``field`` the field path (or null), ``message`` the reason; problems in
an uploaded file also carry ``line`` and ``column``. Some responses add members
of their own (``diff`` on a refused site change, ``current_version`` on stale
orders), as RFC 9457 allows.

:func:`install` registers the exception handlers that turn every error into
this body, and :func:`document` puts the schema in the OpenAPI spec once and
refers every operation's error responses to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from coverwatch.errors import BusUnavailable, Problem

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemError",
    "error",
    "file_error",
    "install",
    "problem_for",
    "problem_response",
    "problems",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("coverwatch.server")


def error(message: str, *, field: str | None = None, index: int | None = None,
          **more: Any) -> dict[str, Any]:
    """One entry of ``errors``."""
    return {"index": index, "field": field, "message": message, **more}


def file_error(p: Problem) -> dict[str, Any]:
    """One problem in an uploaded file, with its line and column."""
    return error(p.message, field=p.field, line=p.line, column=p.column)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _summary(errors: Sequence[Mapping[str, Any]]) -> str:
    first = errors[0]
    where = []
    if first.get("index") is not None:
        where.append(f"event {first['index']}")
    if first.get("field"):
        where.append(f"field {first['field']}")
    text = (", ".join(where) + ": " if where else "") + str(first.get("message", ""))
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text


class ProblemError(StarletteHTTPException):
    """Raise to answer with a problem body: a summary, the problems, extra members."""

    def __init__(self, status: int, detail: str | None = None,
                 errors: Iterable[Mapping[str, Any]] = (), *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        self.errors = [dict(e) for e in errors]
        if detail is None:
            detail = _summary(self.errors) if self.errors else _title(status)
        super().__init__(status, detail, headers=dict(headers) if headers else None)
        self.extra = extra


def problem_response(status: int, detail: str | None = None,
                     errors: Iterable[Mapping[str, Any]] = (), *,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The problem body as a response (for handlers that return rather than raise)."""
    e = ProblemError(status, detail, errors, headers=headers, **extra)
    return _respond(e.status_code, str(e.detail), e.errors, e.headers, e.extra)


def _respond(status: int, detail: str, errors: list[dict[str, Any]],
             headers: Mapping[str, str] | None, extra: Mapping[str, Any]) -> JSONResponse:
    if not errors:
        errors = [error(detail)]
    body = {"type": "about:blank", "title": _title(status), "status": status,
            "detail": detail, "errors": errors, **extra}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None,
                        media_type=PROBLEM_MEDIA_TYPE)


def _from_http(exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc, ProblemError):
        return _respond(exc.status_code, str(exc.detail), exc.errors, exc.headers, exc.extra)
    detail = exc.detail
    errors: list[dict[str, Any]] = []
    if isinstance(detail, Mapping):  # {"message": ..., "problems": [...]}
        errors = [dict(p) for p in detail.get("problems", ())]
        detail = str(detail.get("message", _title(exc.status_code)))
    elif isinstance(detail, list):
        errors = [dict(p) if isinstance(p, Mapping) else error(str(p)) for p in detail]
        detail = _summary(errors) if errors else _title(exc.status_code)
    return _respond(exc.status_code, str(detail), errors, exc.headers, {})


def problem_for(exc: StarletteHTTPException) -> JSONResponse:
    """The problem body the app's handler gives ``exc`` (for paths answered outside it)."""
    return _from_http(exc)


def _field(loc: Sequence[Any]) -> tuple[int | None, str | None]:
    """A pydantic location as (index, field): body/0/t -> (0, "t")."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        kind = parts.pop(0)
        if kind != "body" and parts:
            return None, f"{kind}.{'.'.join(str(p) for p in parts)}"
    index = None
    if parts and isinstance(parts[0], int):
        index = parts.pop(0)
    return index, ".".join(str(p) for p in parts) or None


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with the problem body."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            # Starlette names only the first route's methods; a path may have several.
            path = request.url.path
            methods = {m for r in _api_routes(request.app.routes) if r.path_regex.match(path)
                       for m in (r.methods or ())}
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods - {"HEAD"}))}
        return _from_http(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field, never echo the input (it may hold a password).
        errors = []
        for e in exc.errors():
            index, field = _field(e.get("loc", ()))
            errors.append(error(str(e.get("msg", "invalid")), field=field, index=index))
        return _respond(422, _summary(errors) if errors else "invalid request", errors, None, {})

    @app.exception_handler(BusUnavailable)
    async def bus_unavailable(request: Request, exc: BusUnavailable) -> JSONResponse:
        # The commit is done, the stream has not acknowledged: the client sends again.
        return _respond(503, str(exc), [], {"Retry-After": "1"}, {})

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # An aborted upload is the client's choice, not a server error: no traceback.
        log.info("client went away during %s %s", request.method, request.url.path)
        return _respond(400, "the client closed the connection before the body was sent",
                        [], None, {})

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # The server logs the traceback (Starlette re-raises after this response).
        return _respond(500, "internal server error; the details are in the server log",
                        [], None, {})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                               description=app.description)
            common = {route.operation_id or route.unique_id: _common_statuses(route)
                      for route in _api_routes(app.routes)}
            app.openapi_schema = document(spec, common)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, through FastAPI's wrappers of included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes([*inner.routes, *getattr(inner, "_low_priority_routes", [])])
        elif isinstance(route, APIRoute):
            yield route


def _common_statuses(route: APIRoute) -> list[int]:
    """What any route of this shape may answer: authentication, body limit, validation."""
    out = [500]
    stack = [route.dependant]
    calls = []
    while stack:
        dep = stack.pop()
        calls.append(dep.call)
        stack.extend(dep.dependencies)
    if any(getattr(c, "allowed_roles", None) for c in calls):
        out += [401, 403]
    if route.body_field is not None or (route.methods or set()) & {"POST", "PATCH", "PUT"}:
        out += [400, 413]  # a body that is not JSON (or not UTF-8); a body too large
    dependant = route.dependant
    if route.body_field is not None or dependant.query_params or dependant.path_params:
        out.append(422)
    return out


# -- OpenAPI ----------------------------------------------------------------------

_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: the body of every 4xx and 5xx response.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "field", "message"],
                "properties": {
                    "index": {"type": ["integer", "null"]},
                    "field": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                    "line": {"type": ["integer", "null"]},
                    "column": {"type": ["integer", "null"]},
                },
            },
        },
    },
    "additionalProperties": True,
}
_REF = {"$ref": "#/components/schemas/Problem"}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it sends beyond the common ones."""
    return {s: {"description": _title(s),
                "content": {PROBLEM_MEDIA_TYPE: {"schema": _REF}}} for s in statuses}


def document(spec: dict[str, Any], common: Mapping[str, Iterable[int]]) -> dict[str, Any]:
    """Add the Problem schema once, and refer each operation's error responses to it.

    ``common`` maps an operation id to error statuses it sends besides those
    its route declared (authentication, body limits, validation). FastAPI's
    own 422 body (``HTTPValidationError``) is replaced by the problem body.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = _SCHEMA
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for item in spec.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            for status in common.get(op.get("operationId", ""), ()):
                responses.setdefault(str(status), {"description": _title(status)})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _REF}}
                    response.setdefault("description", _title(int(status)))
    return spec
