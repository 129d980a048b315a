"""Tarmac's HTTP server: one FastAPI app per project, a router per concern (features now,
models later). ``tarmac serve`` runs it under uvicorn.

Example::

    from tarmac.serving import create_app
    app = create_app(tarmac.open("."))      # or: uvicorn --factory tarmac.serving:app_from_env
"""

from tarmac.serving.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
