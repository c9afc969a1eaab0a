"""Security headers on every response, set in one place (an ASGI middleware).

Why a middleware and not per route: a header that one new route forgets is a hole, and the
browser-side defences below only work when every page carries them.

- ``Content-Security-Policy``: scripts, styles, images and connections from our own origin only;
  no plugin, no ``<base>`` rewrite, forms post only to us, and no framing (``frame-ancestors``).
  Inline ``<script>`` elements are refused (our pages load their JavaScript from ``/static``;
  ``<script type="application/json">`` data blocks are not scripts). Two relaxations remain, both
  limited to HTML *attributes*: ``style="..."`` (score bars are drawn with a computed width) and
  the worklist rows' ``onclick`` (a row click opens the case; each row also holds a real link).
  They are ``script-src-attr``/``style-src-attr`` only, so an injected ``<script>`` still does
  not run; moving the row click into ``cases.js`` lets :data:`SCRIPT_ATTRIBUTES` become
  ``'none'``. The ``<style>`` matplotlib puts in its SVG charts is allowed by its hash.
- ``X-Content-Type-Options: nosniff``: a stored photo is never reinterpreted as HTML or script.
- ``X-Frame-Options: DENY`` (older browsers' ``frame-ancestors``): no clickjacking.
- ``Referrer-Policy: same-origin``: case URLs never leak to another site.
- ``Permissions-Policy``: the camera for our own pages (photo capture), nothing else.
- ``Cache-Control: no-store`` on everything but the static files: case data, photos and reports
  must not stay in a shared computer's cache or a proxy.
- ``Strict-Transport-Security`` when the request came over HTTPS (behind a TLS proxy, run uvicorn
  with ``--proxy-headers`` so the scheme is known).
"""

from __future__ import annotations

import base64
import hashlib

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: What inline event-handler attributes may do; ``'none'`` once no template uses ``onclick``.
SCRIPT_ATTRIBUTES = "'unsafe-inline'"

#: The one ``<style>`` element our pages carry: the one matplotlib writes into every SVG chart
#: (the statistics and governance charts are inline SVG). Allowed by its hash, nothing else.
MATPLOTLIB_SVG_STYLE = "*{stroke-linejoin: round; stroke-linecap: butt}"


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        f"script-src-attr {SCRIPT_ATTRIBUTES}",
        f"style-src 'self' {csp_hash(MATPLOTLIB_SVG_STYLE)}",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    ),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)

HSTS = "max-age=31536000; includeSubDomains"

#: Paths whose answers may be cached (versioned assets carrying no patient data).
CACHEABLE_PREFIXES = ("/static/",)


class SecurityHeadersMiddleware:
    """Adds :data:`BASE_HEADERS` (plus ``no-store`` and HSTS where they apply) to every response.

    A header a route already set is left as it is, so a route can be stricter where it needs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith(CACHEABLE_PREFIXES)
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASE_HEADERS:
                    headers.setdefault(name, value)
                if not cacheable:
                    headers["Cache-Control"] = "no-store"
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
