"""Face detection over HTTP: a FastAPI app that batches concurrent requests into one cascade call.

``create_app`` and ``serve`` are in ``openmtcnn.serve.app`` (needs the ``serve`` extra: FastAPI,
uvicorn); importing this package or ``openmtcnn`` does not import them.
"""
from openmtcnn.serve.config import ServeConfig, Settings

__all__ = ["ServeConfig", "Settings"]
