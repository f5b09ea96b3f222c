"""The OsmAnd upload on a lean path: a phone's fix without the routing machinery.

Every phone sends one request per fix (``GET /osmand?id=…&lat=…``), so what each
request costs is what the server can take. :class:`OsmAndPath` sits inside the
request limits (the body limit, the slow-body deadline and the client address still
apply) and answers ``GET`` and ``POST /osmand`` itself with the route's own code
(:func:`coverwatch.api.device_routes.osmand_upload`): no route matching over every
route, no dependency solving, the reply serialised by orjson. Its token cache
(:class:`~coverwatch.server.credentials.DeviceTokens`) spares a seen device its
lookup; the token is checked inside the commit instead. Errors get the same problem
bodies as everywhere (:mod:`coverwatch.http.problems`); anything else goes to the
app as before.
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from coverwatch.api.device_routes import osmand_upload
from coverwatch.errors import BusUnavailable
from coverwatch.http.access import deployment
from coverwatch.http.problems import problem_for, problem_response
from coverwatch.server.credentials import DeviceTokens

__all__ = ["OsmAndPath"]

PATH = "/osmand"
log = logging.getLogger("coverwatch.server")


class OsmAndPath:
    """ASGI middleware: ``GET``/``POST /osmand`` answered here, the rest passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tokens = DeviceTokens()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH \
                or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            result = await osmand_upload(request, deployment(request), self.tokens)
        except HTTPException as e:
            response = problem_for(e)
        except BusUnavailable as e:  # as the app's handler: stored, not yet on the stream
            response = problem_response(503, str(e), headers={"Retry-After": "1"})
        except ClientDisconnect:
            log.info("client went away during %s %s", scope["method"], PATH)
            response = problem_response(
                400, "the client closed the connection before the body was sent")
        else:
            response = result if isinstance(result, Response) else Response(
                orjson.dumps(result), media_type="application/json")
        await response(scope, receive, send)
