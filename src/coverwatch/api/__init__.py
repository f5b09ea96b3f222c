"""The HTTP API (FastAPI): routes, authentication and metrics."""

__all__: list[str] = []
