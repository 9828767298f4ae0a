"""``ntd serve``: the HTTP API, the public report form and the analyst console (one ASGI app).

Modules: ``app`` (assembly), ``api`` + ``openapi`` (JSON API), ``form`` (anonymous report form),
``console`` (analyst pages), ``auth`` (accounts, sessions, CSRF, roles), ``problems`` (RFC 9457
error bodies), ``ratelimit`` (address-free rate limiting), ``security`` (headers, no client
addresses), ``intake_web`` (web-form and batch intake on ``engine.intake``), ``server`` (uvicorn),
``bench`` (``ntd bench api``). See docs/web.md.
"""

from __future__ import annotations

from engine.web.app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]
