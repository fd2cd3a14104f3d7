from django.urls import path

from accounts.consumers import OrganizationEventsConsumer

websocket_urlpatterns = [
    path("ws/events", OrganizationEventsConsumer.as_asgi()),
]
