"""`floatalk serve`: REST jobs, live WebSocket streams and a web page over one FloatPipeline.

FastAPI and uvicorn are the `serve` extra (``pip install floatalk[serve]``); importing this package
does not import them.
"""

from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(*args, **kwargs):
    """See floatalk.server.app.create_app (imported lazily: it needs FastAPI)."""
    from .app import create_app as build

    return build(*args, **kwargs)
