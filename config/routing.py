from django.urls import path

from accounts.consumers import OrganizationEventsConsumer
from generation.consumers import JobEventsConsumer

websocket_urlpatterns = [
    path("ws/events", OrganizationEventsConsumer.as_asgi()),
    path("ws/jobs/<uuid:job_id>", JobEventsConsumer.as_asgi()),
]
