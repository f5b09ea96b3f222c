"""The HTTP edge shared by ``api/`` and ``web/``: who is calling and may they
(``access``), limits every request meets before a route sees it (``limits``,
``slowclients``, ``proxyscheme``), the one error body (``problems``) and safe
response headers (``headers``). FastAPI and ASGI only; it calls into ``server/``
and never imports an entrypoint (``api/``, ``web/``, ``cli/``)."""

__all__: list[str] = []
