"""The platform's ASGI application with the job events consumer polling every 30 s instead of every
second, proposed for generation/consumers.py when a Redis channel layer is configured (its group_send
wakes the consumer at once; the poll is only the safety net). At 1,000 idle websockets the 1 s poll
costs the server most of a core and thousands of database transactions a second.
Run with `bench/load.py --asgi bench.proposed_asgi:application`.
"""
from config.asgi import application  # noqa: F401  (sets Django up first)
from generation import consumers

consumers.POLL_S = 30.0
