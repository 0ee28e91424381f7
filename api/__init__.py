"""CryptoViz REST + WebSocket API (Litestar).

``create_app(settings, api_settings)`` builds the app; ``python -m api`` serves it
with uvicorn. See :mod:`api.settings` for the environment variables.
"""

from api.app import create_app
from api.settings import ApiSettings, load_api_settings

__all__ = ["ApiSettings", "create_app", "load_api_settings"]
