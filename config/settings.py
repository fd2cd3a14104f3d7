"""Settings for both run modes, read from the environment.

With nothing set, the platform runs in the embedded mode: SQLite, local files, no external service.
`DEPLOYMENT=production` switches on the production checks; DATABASE_URL, REDIS_URL and BROKER_URL
point at the production services. Every variable is documented in the README.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEPLOYMENT = env("DEPLOYMENT", "embedded")
if DEPLOYMENT not in {"embedded", "production"}:
    raise ImproperlyConfigured("DEPLOYMENT must be 'embedded' or 'production'")
PRODUCTION = DEPLOYMENT == "production"

# Runtime state of the embedded mode (database, media, cache, generated secret key) lives here.
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var"))).resolve()
# Embedded mode: the folder is its owner's alone (0700): it holds the database, mail with sign-in links, keys.
VAR_DIR.mkdir(parents=True, exist_ok=True, mode=0o700 if not PRODUCTION else 0o777)

DEBUG = env_bool("DEBUG", False)

INSECURE_KEY_PREFIX = "django-insecure"


def _embedded_secret_key() -> str:
    """A per-machine key kept outside the repository, created on first start."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        # Written whole under another name with mode 0600, then linked into place: never readable by
        # others, and a process starting at the same time reads either no file or the whole key.
        descriptor, draft = tempfile.mkstemp(dir=VAR_DIR, prefix=".secret_key.")
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(64))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()


SECRET_KEY = env("SECRET_KEY") or ("" if PRODUCTION else _embedded_secret_key())
# Encrypts secrets kept in the database (provider keys, webhook secrets); derived from SECRET_KEY if unset.
ENCRYPTION_KEY = env("ENCRYPTION_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

if PRODUCTION:
    problems = []
    if DEBUG:
        problems.append("DEBUG is on")
    if not SECRET_KEY or SECRET_KEY.startswith(INSECURE_KEY_PREFIX) or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY is missing, a default, or shorter than 50 characters")
    if not ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS is empty")
    if not env("DATABASE_URL"):
        problems.append("DATABASE_URL is not set")
    if not env("REDIS_URL"):
        # The file cache counts exactly only among the processes of one machine (accounts/counters.py):
        # rate limits and sign-in locks of several web pods need one shared, atomic counter.
        problems.append("REDIS_URL is not set (rate limits and sign-in locks need a shared cache)")
    if (env_bool("OUTBOUND_ALLOW_PRIVATE_URLS", False) or env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)) \
            and not env_list("OUTBOUND_ALLOWED_NETWORKS"):
        # Production opens non-public addresses only as listed networks, never wholesale.
        problems.append("OUTBOUND_ALLOW_PRIVATE_URLS (or WEBHOOK_ALLOW_PRIVATE_URLS) is on without "
                        "OUTBOUND_ALLOWED_NETWORKS")
    if env("STORAGE_BACKEND", "local") == "s3" and not env("S3_BUCKET"):
        problems.append("STORAGE_BACKEND is s3 but S3_BUCKET is not set")
    if problems:
        raise ImproperlyConfigured("refusing to start in production: " + "; ".join(problems))

INSTALLED_APPS = [
    "config.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "accounts",
    "projects",
    "generation",
    "rights",
]

MIDDLEWARE = [
    # First: every later line of the request logs its id, and the metrics time the whole request.
    "config.middleware.RequestIdMiddleware",
    "config.middleware.RequestMetricsMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The portal's language: the user's choice (cookie, set by /i18n/setlang/), else the browser's.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.PortalOrganizationMiddleware",
    # A portal view's NotFound (an access_<thing> helper found nothing) answers the 404 page.
    "config.middleware.NotFoundPageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organization",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# PostgreSQL goes through our backend, which keeps the row level security setting of every
# connection in step with the active tenant scope (config/tenancy.py).
if env("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            env("DATABASE_URL"), conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "config.db.postgresql"
        # A connection pool per process. Under ASGI every request's sync code runs in a thread of its
        # own, and with persistent connections each thread kept one open: 50 clients took all of
        # PostgreSQL's 100 slots (bench/load.py). With the pool a process holds at most this many and a
        # request waits up to DATABASE_POOL_TIMEOUT_S for one. 0 turns the pool off.
        if env_int("DATABASE_POOL_MAX_SIZE", 20) > 0:
            DATABASES["default"]["CONN_MAX_AGE"] = 0  # pooled connections are not also persistent
            DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
                "min_size": min(2, env_int("DATABASE_POOL_MAX_SIZE", 20)),
                "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
                "timeout": env_int("DATABASE_POOL_TIMEOUT_S", 20),
            }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            # A file, not memory: tests start real worker processes that must share it.
            "TEST": {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")},
            # WAL and IMMEDIATE transactions let the web and worker processes share the file.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
    # Created empty with mode 0600 before SQLite opens it (SQLite would use the umask, often 0644); its
    # -wal and -shm files take the database file's mode.
    _sqlite_path = Path(DATABASES["default"]["NAME"])
    if _sqlite_path.parent.is_dir() and not _sqlite_path.exists():
        os.close(os.open(_sqlite_path, os.O_WRONLY | os.O_CREAT, 0o600))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, login throttling) -----------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Shared by every process of the embedded mode on this machine.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": VAR_DIR / "cache"}
    }

# --- Queues and workers -----------------------------------------------------------------------
BROKER_URL = env("BROKER_URL")
# celery (default) or dramatiq; both run the same step code. `manual` dispatches nothing (tests).
QUEUE_ENGINE = env("QUEUE_ENGINE", "celery")
if QUEUE_ENGINE not in {"celery", "dramatiq", "manual"}:
    raise ImproperlyConfigured("QUEUE_ENGINE must be celery, dramatiq or manual")
if BROKER_URL:
    CELERY_BROKER_URL = BROKER_URL
else:
    # The embedded broker: message files in a folder every process of this machine shares.
    (VAR_DIR / "broker").mkdir(exist_ok=True)
    CELERY_BROKER_URL = "embedded://"  # kombu's filesystem transport, each message written whole (config/broker.py)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "broker"),
        "data_folder_out": str(VAR_DIR / "broker"),
        "control_folder": str(VAR_DIR / "broker"),
        "polling_interval": 0.02,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_ENABLE_REMOTE_CONTROL = bool(BROKER_URL)
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_IMPORTS = ("generation.queue.tasks",)  # the tasks and the worker process's signal handlers
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if BROKER_URL.startswith("amqp"):
    from kombu import Exchange, Queue

    from config.queues import QUEUES

    CELERY_TASK_QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name,
                                queue_arguments={"x-max-priority": 9})
                          for name in QUEUES]
# Seconds a worker's claim on a step lasts without renewal; a dead worker's step is requeued after it.
STEP_LEASE_S = env_int("STEP_LEASE_S", 60)
STEP_MAX_ATTEMPTS = env_int("STEP_MAX_ATTEMPTS", 3)
STEP_RETRY_BACKOFF_S = env_int("STEP_RETRY_BACKOFF_S", 5)
SWEEP_INTERVAL_S = env_int("SWEEP_INTERVAL_S", 10)
# A queued step nobody claimed for this long gets a new wake-up message (lost messages heal).
STEP_REDISPATCH_S = env_int("STEP_REDISPATCH_S", 30)
# Frame and clip steps of one job queued or running at once.
JOB_SHOT_CONCURRENCY = env_int("JOB_SHOT_CONCURRENCY", 4)
# Tenant-chosen URLs (webhooks, provider base URLs) reaching a non-public address are refused
# (config/outbound.py). This switch allows them outside production (a self-hosted model server on the
# same machine); WEBHOOK_ALLOW_PRIVATE_URLS is its deprecated name. In production only the networks
# listed in OUTBOUND_ALLOWED_NETWORKS (CIDRs, comma-separated) are allowed beyond public addresses.
# Where local models live on the GPU workers: a studio's model paths (diffusers, transformers) must be
# folders under it, so that no tenant can point a worker at another folder of the machine.
LOCAL_MODELS_DIR = env("LOCAL_MODELS_DIR", "/models")
OUTBOUND_ALLOW_PRIVATE_URLS = env_bool("OUTBOUND_ALLOW_PRIVATE_URLS", False) or env_bool(
    "WEBHOOK_ALLOW_PRIVATE_URLS", False)
WEBHOOK_ALLOW_PRIVATE_URLS = OUTBOUND_ALLOW_PRIVATE_URLS
OUTBOUND_ALLOWED_NETWORKS = env_list("OUTBOUND_ALLOWED_NETWORKS")
for _network in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {_network!r} is not a network (CIDR)") from None
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_RETRY_BASE_S = env_int("WEBHOOK_RETRY_BASE_S", 10)
WEBHOOK_TIMEOUT_S = env_int("WEBHOOK_TIMEOUT_S", 5)

# --- Channels (websockets) ----------------------------------------------------------------------
if REDIS_URL:
    # The socket timeout must exceed channels_redis's 5 s blocking receive (redis-py's default read timeout
    # is 5 s too, and an idle consumer died with it); the pool must allow a burst of group adds and sends
    # from many websockets (redis-py's default of 100 refused the 101st; bench/ws_load.py, 1,000 clients).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5,
                                  "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000)}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# How often a job's websocket re-reads its events. With Redis the workers' events wake it at once and this
# is only the safety net; the embedded mode's workers are other processes, which cannot wake it.
JOB_EVENTS_POLL_S = float(env("JOB_EVENTS_POLL_S", "30" if REDIS_URL else "1"))

# --- Chain ---------------------------------------------------------------------------------
# Empty: the embedded in-process EVM, journaled under CHAIN_DIR so its state survives restarts.
CHAIN_RPC_URL = env("CHAIN_RPC_URL")
CHAIN_DIR = Path(env("CHAIN_DIR", str(VAR_DIR / "chain")))
CHAIN_CONTRACT = env("CHAIN_CONTRACT")  # the registry's address on CHAIN_RPC_URL (`manage.py deploy_registry`)
CHAIN_KEYSTORE = env("CHAIN_KEYSTORE")  # signer keystore file; or CHAIN_SIGNER_KEY in the environment
CHAIN_KEYSTORE_PASSWORD = env("CHAIN_KEYSTORE_PASSWORD")
CHAIN_RPC_TIMEOUT = env_int("CHAIN_RPC_TIMEOUT", 10)
# Chains whose reset the platform recovers by re-anchoring (the embedded chain always counts).
CHAIN_DEV_CHAIN_IDS = env("CHAIN_DEV_CHAIN_IDS", "31337,1337")
# Stuck registry transactions: re-sent with the same nonce and fees raised by at least 12.5%.
CHAIN_PRIORITY_FEE_WEI = env_int("CHAIN_PRIORITY_FEE_WEI", 10**9)
CHAIN_FEE_BUMP_AFTER_S = env_int("CHAIN_FEE_BUMP_AFTER_S", 180)
CHAIN_FEE_BUMP_PERCENT = float(env("CHAIN_FEE_BUMP_PERCENT", "12.5"))
CHAIN_FEE_BUMPS_MAX = env_int("CHAIN_FEE_BUMPS_MAX", 10)
CHAIN_MAX_FEE_PER_GAS_WEI = env_int("CHAIN_MAX_FEE_PER_GAS_WEI", 0)  # 0: no cap
REGISTRY_BATCH_SIZE = env_int("REGISTRY_BATCH_SIZE", 1000)
REGISTRY_CONFIRMATIONS = env_int("REGISTRY_CONFIRMATIONS", 1)

# --- Storage -------------------------------------------------------------------------------
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# local: files under MEDIA_ROOT, streamed by the views. s3: a private bucket through django-storages;
# downloads redirect to links signed for S3_SIGNED_URL_EXPIRY_S seconds (config/storage.py).
STORAGE_BACKEND = env("STORAGE_BACKEND", "local")
S3_BUCKET = env("S3_BUCKET")
S3_SIGNED_URL_EXPIRY_S = env_int("S3_SIGNED_URL_EXPIRY_S", 300)
# The store's address as browsers reach it, when it differs from S3_ENDPOINT_URL (an internal name).
S3_PUBLIC_ENDPOINT_URL = env("S3_PUBLIC_ENDPOINT_URL")
if STORAGE_BACKEND not in {"local", "s3"}:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be local or s3, not {STORAGE_BACKEND!r}")
if STORAGE_BACKEND == "s3" and not S3_BUCKET:
    raise ImproperlyConfigured("STORAGE_BACKEND is s3 but S3_BUCKET is not set")
if STORAGE_BACKEND == "s3" and bool(env("S3_ACCESS_KEY_ID")) != bool(env("S3_SECRET_ACCESS_KEY")):
    # One without the other would sign every request wrongly, and fail only at the first file.
    raise ImproperlyConfigured("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together, or neither is "
                               "(then boto3 finds credentials itself: the instance's or the pod's role)")
if not 1 <= S3_SIGNED_URL_EXPIRY_S <= 7 * 24 * 3600:
    raise ImproperlyConfigured("S3_SIGNED_URL_EXPIRY_S must be from 1 second to 7 days (the S3 maximum)")
from config.storage import default_storage_config  # noqa: E402 (needs no settings)

STORAGES = {
    "default": default_storage_config(
        backend=STORAGE_BACKEND, bucket=S3_BUCKET, endpoint_url=env("S3_ENDPOINT_URL"), region=env("S3_REGION"),
        # Credentials only from the environment; without them boto3 uses the machine's or the pod's role.
        access_key_id=env("S3_ACCESS_KEY_ID"), secret_access_key=env("S3_SECRET_ACCESS_KEY"),
        prefix=env("S3_PREFIX"), signed_url_expiry_s=S3_SIGNED_URL_EXPIRY_S),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
# Shot frames and clips of finished jobs are deleted this many days after their last use (0: kept
# forever); final videos, thumbnails and rights files are never (generation/retention.py).
ARTIFACT_RETENTION_DAYS = env_int("ARTIFACT_RETENTION_DAYS", 30)

# --- Authentication ----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
# Failed sign-ins allowed per email and address in the window, then a lock until it ends.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW_S = env_int("LOGIN_FAILURE_WINDOW_S", 900)
INVITATION_TTL_HOURS = env_int("INVITATION_TTL_HOURS", 168)
# Password-reset mails per address and per client address (counted whether or not the account exists).
PASSWORD_RESET_RATE_PER_EMAIL = env("PASSWORD_RESET_RATE_PER_EMAIL", "3/hour")
PASSWORD_RESET_RATE_PER_IP = env("PASSWORD_RESET_RATE_PER_IP", "20/hour")

# --- Email ---------------------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    # Embedded: files under EMAIL_FILE_PATH, readable by their owner only (config/mail.py).
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "config.mail.PrivateFileEmailBackend",
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "platform@localhost")
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- API -----------------------------------------------------------------------------------
# Largest request body accepted outside file uploads (JSON and form bodies).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
API_RATE_LIMITS = {
    "api_key": env("API_RATE_PER_KEY", "600/min"),
    "organization": env("API_RATE_PER_ORG", "3000/min"),
    "user": env("API_RATE_PER_USER", "1200/min"),
    "anonymous": env("API_RATE_ANON", "120/min"),
    "verify": env("API_RATE_VERIFY", "30/min"),
}
# Review and delivery (generation/review.py): how long a comment's author may edit it, and how many passphrase
# tries a share link takes from one address (every try counts; over it, 429 with Retry-After).
COMMENT_EDIT_WINDOW_S = int(env("COMMENT_EDIT_WINDOW_S", "900"))
SHARE_PASSPHRASE_CHECK_RATE = env("SHARE_PASSPHRASE_CHECK_RATE", "5/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.throttling.PlatformRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "DEFAULT_SCHEMA_CLASS": "config.schema.ScopedAutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")
SPECTACULAR_SETTINGS = {
    "TITLE": "Studio platform API",
    "DESCRIPTION": "Partner API. Authenticate with `Authorization: Bearer <api key>`; "
    "each operation lists the scope it needs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "generation.models.DeliveryStatus",
        "JobStatusEnum": "generation.models.JobStatus",
        "ProviderNameEnum": "projects.templates.PROVIDER_NAMES",
        "TextOrVoiceProviderNameEnum": "projects.templates.TEXT_AND_VOICE_PROVIDER_NAMES",
        "SubtitleSizeEnum": "projects.templates.SUBTITLE_SIZES",
        "SubtitlePositionEnum": "projects.templates.SUBTITLE_POSITIONS",
        "SubtitleOutlineEnum": "projects.templates.SUBTITLE_OUTLINES",
        "SubtitleBackgroundEnum": "projects.templates.SUBTITLE_BACKGROUNDS",
        "ApprovalRuleEnum": "projects.templates.APPROVAL_RULES",
    },
}

# /api/v1/health checks the parts at most once per this many seconds per process (it is public).
HEALTH_CACHE_S = float(env("HEALTH_CACHE_S", "2" if PRODUCTION else "0"))

# How many reverse proxies in front of the web tier append to X-Forwarded-For (0: trust none).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- Rights ----------------------------------------------------------------------------------
VERIFY_MAX_BYTES = env_int("VERIFY_MAX_BYTES", 200 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024  # larger uploads go to a temporary file
# A fingerprint match: frames within this Hamming distance, and at least this fraction of frames.
VERIFY_MAX_DISTANCE = env_int("VERIFY_MAX_DISTANCE", 8)
VERIFY_MIN_FRACTION = float(env("VERIFY_MIN_FRACTION", "0.5"))
RIGHTS_KEYS_DIR = Path(env("RIGHTS_KEYS_DIR", str(VAR_DIR / "keys")))
# Media limits of every upload path (verify, assets, portal, manage.py protect; config/media_limits.py):
# what a video may declare, checked from its headers before anything is decoded...
MEDIA_MAX_PIXELS = env_int("MEDIA_MAX_PIXELS", 3840 * 2160)  # one video frame
# A PNG or JPEG (4096x4096). Images decode in the web process (Pillow, OpenCV), so this is what bounds
# them: verifying a flat 40 MP PNG of 130 KB took 12 s and 495 MB there, a 4K one 1.4 s and 73 MB.
MEDIA_MAX_IMAGE_PIXELS = env_int("MEDIA_MAX_IMAGE_PIXELS", 4096 * 4096)
MEDIA_MAX_FPS = float(env("MEDIA_MAX_FPS", "120"))
MEDIA_MAX_FRAMES = env_int("MEDIA_MAX_FRAMES", 36_000)  # 10 minutes at 60 fps
MEDIA_MAX_DURATION_S = float(env("MEDIA_MAX_DURATION_S", "600"))
MEDIA_MAX_AUDIO_STREAMS = env_int("MEDIA_MAX_AUDIO_STREAMS", 2)
MEDIA_MAX_AUDIO_S = float(env("MEDIA_MAX_AUDIO_S", "600"))  # an uploaded audio asset (a music track)
MEDIA_MAX_STREAMS = env_int("MEDIA_MAX_STREAMS", 8)
MEDIA_VIDEO_CODECS = env_list("MEDIA_VIDEO_CODECS", "h264,hevc,av1,vp9,mpeg4,prores")
MEDIA_AUDIO_CODECS = env_list("MEDIA_AUDIO_CODECS", "aac,mp3,opus,alac,ac3,eac3,flac,pcm_s16le,pcm_s24le")
# ...and what the ffmpeg processes on an accepted file may take: the header probe's time, the time budget
# of an upload's whole media work (a public verification's is shorter), and each process's address space.
MEDIA_PROBE_TIMEOUT_S = float(env("MEDIA_PROBE_TIMEOUT_S", "5"))
MEDIA_DECODE_TIMEOUT_S = float(env("MEDIA_DECODE_TIMEOUT_S", "300"))
MEDIA_DECODE_MAX_MEMORY_MB = env_int("MEDIA_DECODE_MAX_MEMORY_MB", 3072)
VERIFY_DECODE_TIMEOUT_S = float(env("VERIFY_DECODE_TIMEOUT_S", "30"))
# Public verifications decoding at once per web process; more wait this long, then 503 + Retry-After.
VERIFY_CONCURRENCY = env_int("VERIFY_CONCURRENCY", 2)
VERIFY_QUEUE_WAIT_S = float(env("VERIFY_QUEUE_WAIT_S", "2"))
VERIFY_RETRY_AFTER_S = float(env("VERIFY_RETRY_AFTER_S", "5"))

# --- Security ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes talk plain HTTP to the pod; everything else is redirected to HTTPS.
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Locale --------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
# The portal speaks English and Simplified Chinese; translations live in locale/ (compiled .mo committed).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logs, metrics, error reports ---------------------------------------------------------------
# json: one object per line with the request, job and step ids (config/logging.py); text: for people.
LOG_FORMAT = env("LOG_FORMAT", "json" if PRODUCTION else "text")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logging.JsonFormatter"}, "text": {"()": "config.logging.TextFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # uvicorn configured these before Django started; the same format for its lines too.
        **{name: {"handlers": ["console"], "propagate": False}
           for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    },
}
# /metrics: with a token, `Authorization: Bearer <token>` is required; without one, only direct
# requests from loopback or private addresses are answered (config/metrics.py).
METRICS_TOKEN = env("METRICS_TOKEN")
# Workers serve their own metrics on this port when set (0: not at all).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDR = env("WORKER_METRICS_ADDR", "0.0.0.0" if PRODUCTION else "127.0.0.1")
if env("PROMETHEUS_MULTIPROC_DIR"):
    Path(env("PROMETHEUS_MULTIPROC_DIR")).mkdir(parents=True, exist_ok=True)
# On SIGTERM a worker finishes its running step within this many seconds, else hands it back to the
# queue at once (under Kubernetes' terminationGracePeriodSeconds, 30 by default, less a margin).
WORKER_SHUTDOWN_GRACE_S = env_int("WORKER_SHUTDOWN_GRACE_S", 25)
# Error reports go to Sentry only when a DSN is set; no personal data is sent.
SENTRY_DSN = env("SENTRY_DSN")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    sentry_sdk.init(dsn=SENTRY_DSN, environment=DEPLOYMENT, send_default_pii=False,
                    integrations=[DjangoIntegration(), CeleryIntegration(), DramatiqIntegration()])
