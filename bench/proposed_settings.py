"""The platform's settings with the changes bench/load.py found necessary under load, proposed for
config/settings.py (run with `bench/load.py --settings bench.proposed_settings`):

1. A psycopg connection pool per process instead of persistent connections. Under ASGI, Django runs each
   request's sync code in a thread of its own, and each thread opens its own connection: 50 concurrent
   clients took all 100 PostgreSQL connection slots (500s). With the pool a process holds at most
   DATABASE_POOL_MAX_SIZE connections and a request waits for one. Needs psycopg-pool.
2. The Redis channel layer with a socket timeout above channels_redis's 5 s BZPOPMIN: redis-py 8 reads
   with a 5 s timeout by default, so an idle consumer's receive times out and the consumer dies (its
   websocket closes without a close frame); and a pool that allows 1,000 concurrent commands, where
   redis-py's default of 100 refuses the 101st (MaxConnectionsError on a burst of group_add/discard).
"""
import os

from config.settings import *  # noqa: F401,F403
from config.settings import CHANNEL_LAYERS, DATABASES, REDIS_URL

if DATABASES["default"]["ENGINE"] == "config.db.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # pooled connections are not also persistent
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2, "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "8")), "timeout": 20}

if REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{
        "address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5,
        "max_connections": int(os.environ.get("CHANNEL_LAYER_MAX_CONNECTIONS", "1000"))}]
