"""ASGI entry point: HTTP through Django, websockets through Channels.

get_asgi_application() runs first so that Django (and its app registry) is set up before
anything imports models through the websocket routing.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite import lifecycle  # noqa: E402
from chatsite.limits import RequestBodyLimit  # noqa: E402
from chatsite.origins import SameOriginValidator  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Oversized bodies are refused before Django reads them.
        "http": RequestBodyLimit(django_asgi_app),
        # The exact origin first (a foreign page must not ride the user's cookie), then
        # the session, then the routes; the consumer itself checks ownership.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

lifecycle.install()
