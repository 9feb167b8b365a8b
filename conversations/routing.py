from django.urls import path

from .consumers import ConversationConsumer, UserConsumer

websocket_urlpatterns = [
    path("ws/me/", UserConsumer.as_asgi()),
    path("ws/conversations/<uuid:public_id>/", ConversationConsumer.as_asgi()),
]
