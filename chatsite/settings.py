"""chatsite settings: one module, driven by the environment.

Defaults give a working development site with no set-up at all (SQLite, the in-memory
channel layer, the built-in demo model). With DJANGO_DEBUG off the site fails closed:
it refuses to start without DJANGO_SECRET_KEY and explicit DJANGO_ALLOWED_HOSTS.
"""

import hashlib
import hmac
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatsite import oidc

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # Fail closed: a production site with a guessable key signs forgeable sessions.
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is off.")
# Origins other than the site's own (scheme://host[:port]) whose pages may post forms and
# open websockets; the site's own origin (its Host, http or https) needs no entry.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "template_partials",
    "django_htmx",
    # Single sign-on (README, Single sign-on): only the OpenID Connect provider's views are
    # mounted (accounts/urls.py); sign-in and sign-up pages stay the site's own.
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.github",
    "conversations",
    "moderation",
    "accounts",
    # Failed sign-ins limited per account and per address (see "Sign-in and sign-up limits").
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatsite.middleware.ContentSecurityPolicyMiddleware",
    # In debug: the site's 404 page rather than Django's (which the policy leaves unstyled).
    "chatsite.middleware.DebugErrorPagesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.htmx: whether (and how) htmx made the request
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.SuspensionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-allauth's request context for its single sign-on views (it requires it).
    "allauth.account.middleware.AccountMiddleware",
    # Last, as axes requires: turns a refused sign-in into the page that says when to retry.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversations.context_processors.chatsite",
                "accounts.context_processors.sign_in",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

# --- Database -------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
_SQLITE = DATABASE_URL.startswith("sqlite:")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        # SQLite: keep each thread's connection (opening one, with its PRAGMAs, cost more
        # than a checkpoint's UPDATE). PostgreSQL: each connection is a server process, so
        # the default stays one per unit of work unless a pooler or the operator says so.
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 600 if _SQLITE else 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Several writers (streams checkpointing, requests) share one file: WAL lets
        # readers run beside a writer, IMMEDIATE takes the write lock up front so a
        # transaction never fails half-way on upgrade, and the timeout waits instead of
        # raising "database is locked".
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests use a file too (not :memory:), so that they see WAL and real locking.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("CHATSITE_TEST_DB") or str(BASE_DIR / ".test-db.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ---------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub with a bounded queue per channel (see chatsite/layers.py for why not
            # channels_redis's list-based layer).
            "BACKEND": "chatsite.layers.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}
                ],
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatsite.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    }

# --- Auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
CHATSITE_SIGNUP_ENABLED = env_bool("CHATSITE_SIGNUP_ENABLED", True)

# --- Single sign-on (django-allauth, OpenID Connect and GitHub; README, Single sign-on) --
CHATSITE_OIDC_PROVIDERS = oidc.providers_from_env(os.environ, debug=DEBUG)
CHATSITE_OAUTH_PROVIDERS = oidc.oauth_providers_from_env(os.environ, debug=DEBUG)
# Off: the sign-in page has no password form and refuses one posted (the admin's too);
# only the identity providers sign anyone in. Local sign-up closes with it.
CHATSITE_LOCAL_SIGNIN_ENABLED = env_bool("CHATSITE_LOCAL_SIGNIN_ENABLED", True)
if not CHATSITE_LOCAL_SIGNIN_ENABLED:
    if not CHATSITE_OIDC_PROVIDERS and not CHATSITE_OAUTH_PROVIDERS:
        raise ImproperlyConfigured(
            "CHATSITE_LOCAL_SIGNIN_ENABLED=0 needs CHATSITE_OIDC_PROVIDERS "
            "or CHATSITE_OAUTH_PROVIDERS: "
            "otherwise nobody could sign in."
        )
    CHATSITE_SIGNUP_ENABLED = False
# Single sign-on only for addresses in these domains, and only with the provider's word
# that the address is verified (empty: any address, verified or not).
CHATSITE_SSO_EMAIL_DOMAINS = oidc.email_domains_from_env(os.environ)
SOCIALACCOUNT_PROVIDERS = oidc.socialaccount_providers(
    CHATSITE_OIDC_PROVIDERS, CHATSITE_OAUTH_PROVIDERS
)
SOCIALACCOUNT_ADAPTER = "accounts.sso.SocialAccountAdapter"
ACCOUNT_ADAPTER = "accounts.sso.AccountAdapter"
# The provider's sign-in is the sign-up: no allauth form in between (accounts/sso.py
# decides every case that allauth would have sent to it).
SOCIALACCOUNT_AUTO_SIGNUP = True
# A sign-in starts with a POST from the site's page (CSRF-protected), never a GET.
SOCIALACCOUNT_LOGIN_ON_GET = False
# Linking by e-mail is decided in accounts/sso.py (only a provider-verified address).
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = False
# The provider's tokens are not kept: the site needs who signed in, not access to them.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
# Ask for the addresses too (GitHub: the user:email scope and /user/emails, which says which
# are verified): without it an address is never verified and never links or passes the
# domain allow-list.
SOCIALACCOUNT_QUERY_EMAIL = True

# --- Sign-in and sign-up limits (django-axes for sign-ins) ------------------------------
# Failed sign-ins (site and admin alike) are counted per account and, separately, per
# client address; past either limit every sign-in it covers is refused, the right password
# too, until the cool-off has run from the failure that reached it. Never a permanent lock:
# that would let anyone lock a victim out for good. 0 turns a limit off.
CHATSITE_LOGIN_FAILURES_PER_ACCOUNT = env_int("CHATSITE_LOGIN_FAILURES_PER_ACCOUNT", 5)
CHATSITE_LOGIN_FAILURES_PER_ADDRESS = env_int("CHATSITE_LOGIN_FAILURES_PER_ADDRESS", 20)
CHATSITE_LOGIN_COOLOFF_MINUTES = env_int("CHATSITE_LOGIN_COOLOFF_MINUTES", 15)
if CHATSITE_LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("CHATSITE_LOGIN_COOLOFF_MINUTES must be at least 1.")
# Accounts created per client address in the last hour (counted in the database, so the
# limit holds across processes); 0: no limit.
CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = env_int("CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR", 10)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out sign-in outright
    "django.contrib.auth.backends.ModelBackend",
]
# The database handler (holds across processes), with a limit of its own per account and
# per address: it reports how many limits are reached, so one is enough to lock.
AXES_HANDLER = "accounts.throttling.SigninFailureHandler"
AXES_FAILURE_LIMIT = 1
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=CHATSITE_LOGIN_COOLOFF_MINUTES)
# Failures while locked out are not counted, so the time the page gives stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True  # the account's failures only (see the handler)
# REMOTE_ADDR as daphne gives it, never a header by itself: behind a proxy, run daphne
# with --proxy-headers and have the proxy overwrite X-Forwarded-For (README, Security).
AXES_CLIENT_IP_CALLABLE = "accounts.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.views.signin_refused"
# No row per successful sign-in: nothing reads it, and it would keep addresses forever.
AXES_DISABLE_ACCESS_LOG = True

# --- Security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    # Production is HTTPS: cookies only over TLS, plain http redirected, and browsers told
    # (HSTS) never to try http again. Each has a switch for a site on plain http (a
    # benchmark on loopback, a private network): DJANGO_SECURE_COOKIES=0,
    # DJANGO_SECURE_SSL_REDIRECT=0, DJANGO_SECURE_HSTS_SECONDS=0.
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # A TLS-terminating proxy (nginx) says so in X-Forwarded-Proto: it must set that header
    # itself, overwriting whatever a client sent.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is a commitment the operator makes by submitting the domain to browsers'
    # lists; the directive is theirs to add (DJANGO_SECURE_HSTS_PRELOAD=1), so Django's
    # reminder about it is silenced rather than answered for them.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Request bodies past this size get a 413 before Django reads them (chatsite/limits.py);
# the import form alone takes CHATSITE_IMPORT_MAX_BYTES, and only from a signed-in session.
CHATSITE_MAX_REQUEST_BYTES = env_int("CHATSITE_MAX_REQUEST_BYTES", 3_000_000)

# --- Internationalisation / static ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only a deployment collects static files; in debug WhiteNoise serves them from the finders.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or (None if DEBUG else BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Files attached to messages: never under a public URL (the owner-scoped view serves
    # them). Local disk by default; any Django storage backend works (README: S3).
    "attachments": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": os.environ.get("CHATSITE_ATTACHMENTS_ROOT") or BASE_DIR / "attachments",
            "base_url": None,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- The upstream model -----------------------------------------------------------------
# With no OPENAI_BASE_URL and no OPENAI_API_KEY the built-in demo model answers; it is an
# OpenAI-compatible endpoint served by this very site (see conversations/demo.py).
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
if OPENAI_API_KEY and not OPENAI_BASE_URL:
    OPENAI_BASE_URL = "https://api.openai.com/v1"
CHATSITE_DEMO_MODE = not OPENAI_BASE_URL
# Where the generation reaches the demo endpoint; by default the address of the server
# that accepted the request (so any port works), this overrides it.
CHATSITE_DEMO_BASE_URL = os.environ.get("CHATSITE_DEMO_BASE_URL", "")
# The key this site's own server-side calls present to its demo endpoint (derived from the
# secret key, so it is never configured and never reaches a browser). Signed-in users may
# call the demo too; anyone else gets a 401.
CHATSITE_DEMO_API_KEY = hmac.new(
    SECRET_KEY.encode(), b"chatsite demo upstream", hashlib.sha256
).hexdigest()
OPENAI_MODEL = os.environ.get(
    "OPENAI_MODEL", "chatsite-demo" if CHATSITE_DEMO_MODE else "gpt-4o-mini"
)
# The model that writes conversation titles (a short non-streaming request after the
# first answer); empty: the conversation's own model.
CHATSITE_TITLE_MODEL = os.environ.get("CHATSITE_TITLE_MODEL", "")
CHATSITE_TITLE_TIMEOUT = env_float("CHATSITE_TITLE_TIMEOUT", 15.0)
# Titles wait while this many answers (or more) stream in the process.
CHATSITE_TITLE_BUSY_ANSWERS = env_int("CHATSITE_TITLE_BUSY_ANSWERS", 20)
# The models users may pick (comma-separated); empty: whatever the upstream lists.
CHATSITE_MODELS = env_list("CHATSITE_MODELS", "")
CHATSITE_MODELS_CACHE_SECONDS = env_float("CHATSITE_MODELS_CACHE_SECONDS", 300.0)
CHATSITE_MAX_SYSTEM_PROMPT_CHARS = env_int("CHATSITE_MAX_SYSTEM_PROMPT_CHARS", 8000)
# Share links a user may create in an hour (counted in the database, revoked ones too, so
# the limit holds across processes); 0: no limit.
CHATSITE_SHARES_PER_HOUR = env_int("CHATSITE_SHARES_PER_HOUR", 30)

# --- Moderation --------------------------------------------------------------------------
# Screen messages and answers with the upstream's /moderations endpoint as well as the
# local rules edited in admin.
CHATSITE_MODERATION_ENDPOINT = env_bool("CHATSITE_MODERATION_ENDPOINT", False)
CHATSITE_MODERATION_MODEL = os.environ.get("CHATSITE_MODERATION_MODEL", "")
CHATSITE_SCREENING_TIMEOUT = env_float("CHATSITE_SCREENING_TIMEOUT", 5.0)
# Local rules are read once per this many seconds per process (edits in this process
# apply at once): screening runs for every sentence of every answer.
CHATSITE_SCREENING_RULES_SECONDS = env_float("CHATSITE_SCREENING_RULES_SECONDS", 10.0)
# When screening fails or times out: "allow" (not flagged) or "block".
CHATSITE_SCREENING_ON_ERROR = os.environ.get("CHATSITE_SCREENING_ON_ERROR", "allow")
# Users see on their settings page when staff opened their conversations, and why.
CHATSITE_SHOW_ACCESS_LOG_TO_USERS = env_bool("CHATSITE_SHOW_ACCESS_LOG_TO_USERS", True)
if CHATSITE_SCREENING_ON_ERROR not in ("allow", "block"):
    raise ImproperlyConfigured("CHATSITE_SCREENING_ON_ERROR must be 'allow' or 'block'.")

# --- Quotas (0: unlimited); overrides per user and per group in admin ---------------------
CHATSITE_QUOTA_MESSAGES_PER_DAY = env_int("CHATSITE_QUOTA_MESSAGES_PER_DAY", 0)
CHATSITE_QUOTA_TOKENS_PER_DAY = env_int("CHATSITE_QUOTA_TOKENS_PER_DAY", 0)
CHATSITE_QUOTA_TOKENS_PER_MONTH = env_int("CHATSITE_QUOTA_TOKENS_PER_MONTH", 0)
# The composer shows what is left once less than this share of a limit remains.
CHATSITE_QUOTA_WARN_BELOW = env_float("CHATSITE_QUOTA_WARN_BELOW", 0.2)

# Retention: `manage.py purge_conversations` deletes conversations idle this many days
# (0: keep everything). Run it from cron; see the README.
CHATSITE_RETENTION_DAYS = env_int("CHATSITE_RETENTION_DAYS", 0)

# --- Import ------------------------------------------------------------------------------
CHATSITE_IMPORT_MAX_BYTES = env_int("CHATSITE_IMPORT_MAX_BYTES", 50_000_000)
CHATSITE_IMPORT_MAX_CONVERSATIONS = env_int("CHATSITE_IMPORT_MAX_CONVERSATIONS", 5000)
CHATSITE_IMPORT_MAX_MESSAGES = env_int("CHATSITE_IMPORT_MAX_MESSAGES", 10_000)  # each
CHATSITE_IMPORT_MAX_MESSAGE_CHARS = env_int("CHATSITE_IMPORT_MAX_MESSAGE_CHARS", 500_000)
# An import is written in transactions of at most this many rows (others wait for one at
# most); one of more rows than _BACKGROUND_ROWS is written after the response, with
# progress on the settings page; one silent this long died with its process.
CHATSITE_IMPORT_BATCH_ROWS = env_int("CHATSITE_IMPORT_BATCH_ROWS", 1000)
CHATSITE_IMPORT_BACKGROUND_ROWS = env_int("CHATSITE_IMPORT_BACKGROUND_ROWS", 2000)
CHATSITE_IMPORT_STALE_AFTER = env_float("CHATSITE_IMPORT_STALE_AFTER", 120.0)
CHATSITE_DEMO_TOKENS_PER_SECOND = env_float("CHATSITE_DEMO_TOKENS_PER_SECOND", 40.0)
# The demo's models and how fast each writes (times CHATSITE_DEMO_TOKENS_PER_SECOND), so
# that the model picker has something to pick from with no set-up at all.
CHATSITE_DEMO_MODELS = {"chatsite-demo": 1.0, "chatsite-demo-fast": 4.0}

# --- Attachments (files attached to messages; see conversations/attachments.py) ---------
CHATSITE_ATTACHMENT_MAX_BYTES = env_int("CHATSITE_ATTACHMENT_MAX_BYTES", 10_000_000)  # a file
CHATSITE_ATTACHMENTS_PER_MESSAGE = env_int("CHATSITE_ATTACHMENTS_PER_MESSAGE", 5)
# Everything a user keeps attached, sent or waiting to be sent (0: no cap).
CHATSITE_ATTACHMENT_USER_BYTES = env_int("CHATSITE_ATTACHMENT_USER_BYTES", 200_000_000)
CHATSITE_ATTACHMENT_USER_FILES = env_int("CHATSITE_ATTACHMENT_USER_FILES", 1000)
CHATSITE_ATTACHMENT_TEXT_CHARS = env_int("CHATSITE_ATTACHMENT_TEXT_CHARS", 200_000)
CHATSITE_ATTACHMENT_PDF_PAGES = env_int("CHATSITE_ATTACHMENT_PDF_PAGES", 100)
CHATSITE_ATTACHMENT_IMAGE_PIXELS = env_int("CHATSITE_ATTACHMENT_IMAGE_PIXELS", 40_000_000)
CHATSITE_ATTACHMENT_IMAGE_SIDE = env_int("CHATSITE_ATTACHMENT_IMAGE_SIDE", 8192)
# Images are kept (and sent) scaled down to at most this many pixels a side.
CHATSITE_ATTACHMENT_IMAGE_MAX_SIDE = env_int("CHATSITE_ATTACHMENT_IMAGE_MAX_SIDE", 2048)
# A PDF or an image is checked in a child process given this long (wall clock and CPU).
CHATSITE_ATTACHMENT_INSPECT_SECONDS = env_float("CHATSITE_ATTACHMENT_INSPECT_SECONDS", 10.0)
# Images sent with one request: a conversation's most recent ones (older: a line says so).
CHATSITE_ATTACHMENT_IMAGES_PER_REQUEST = env_int("CHATSITE_ATTACHMENT_IMAGES_PER_REQUEST", 8)
# Uploaded but never sent: `purge_conversations` deletes them after this many hours.
CHATSITE_ATTACHMENT_PENDING_HOURS = env_int("CHATSITE_ATTACHMENT_PENDING_HOURS", 24)
# The models that are sent images (comma-separated, shell-style patterns like `gpt-4o*`,
# or `*`). The demo's models take them (so the feature shows with no set-up); otherwise
# none until the operator says which.
CHATSITE_VISION_MODELS = env_list(
    "CHATSITE_VISION_MODELS", "chatsite-demo,chatsite-demo-fast" if CHATSITE_DEMO_MODE else ""
)

# --- Streaming --------------------------------------------------------------------------
CHATSITE_FRAME_INTERVAL = env_float("CHATSITE_FRAME_INTERVAL", 0.05)  # seconds between frames
# Under load frames get coarser, up to this interval: one frame per 50 ms per answer while
# fewer than CHATSITE_FRAME_FULL_RATE_ANSWERS answers stream in this process, then longer
# (a frame costs about the same whatever it carries: at 50 answers, 100 ms halves the
# frames a process sends and keeps the p99 lag near 100 ms; README, Performance).
CHATSITE_FRAME_INTERVAL_MAX = env_float("CHATSITE_FRAME_INTERVAL_MAX", 0.15)
CHATSITE_FRAME_FULL_RATE_ANSWERS = env_int("CHATSITE_FRAME_FULL_RATE_ANSWERS", 25)
CHATSITE_CHECKPOINT_INTERVAL = env_float("CHATSITE_CHECKPOINT_INTERVAL", 1.0)  # seconds
# From this many answers in one process checkpoints get rarer, up to this interval.
CHATSITE_CHECKPOINT_FULL_RATE_ANSWERS = env_int("CHATSITE_CHECKPOINT_FULL_RATE_ANSWERS", 20)
CHATSITE_CHECKPOINT_INTERVAL_MAX = env_float("CHATSITE_CHECKPOINT_INTERVAL_MAX", 4.0)
CHATSITE_MAX_MESSAGE_CHARS = env_int("CHATSITE_MAX_MESSAGE_CHARS", 32_000)
CHATSITE_MAX_FRAME_BYTES = env_int("CHATSITE_MAX_FRAME_BYTES", 256_000)
CHATSITE_UPSTREAM_CONNECT_TIMEOUT = env_float("CHATSITE_UPSTREAM_CONNECT_TIMEOUT", 10.0)
# No chunk for this long aborts the call (the answer is kept as interrupted).
CHATSITE_UPSTREAM_IDLE_TIMEOUT = env_float("CHATSITE_UPSTREAM_IDLE_TIMEOUT", 60.0)
# Requests one upstream takes at once from this process (0: unlimited). Set it to the
# local server's slots (llama.cpp, llama-cpp-python: 1): answers wait in order, and titles
# and the model list never run beside an answer (conversations/gate.py).
CHATSITE_UPSTREAM_CONCURRENCY = env_int("CHATSITE_UPSTREAM_CONCURRENCY", 0)
# Keep each answer's raw upstream body with arrival times, for post-mortems (superusers
# read it in admin; each viewing is in the access log). Off by default: it is model text.
CHATSITE_CHUNK_LOG = env_bool("CHATSITE_CHUNK_LOG", False)
CHATSITE_CHUNK_LOG_MAX_BYTES = env_int("CHATSITE_CHUNK_LOG_MAX_BYTES", 262_144)  # per answer
# Retries before the first token (408/409/429/5xx, network): total time budget, seconds.
CHATSITE_RETRY_BUDGET = env_float("CHATSITE_RETRY_BUDGET", 30.0)
CHATSITE_RETRY_BASE_DELAY = env_float("CHATSITE_RETRY_BASE_DELAY", 0.5)
# Runaway answers end, kept and marked, past either cap.
CHATSITE_MAX_ANSWER_CHARS = env_int("CHATSITE_MAX_ANSWER_CHARS", 200_000)
CHATSITE_MAX_ANSWER_SECONDS = env_float("CHATSITE_MAX_ANSWER_SECONDS", 900.0)
# Per-user limits (0 turns one off).
CHATSITE_MESSAGES_PER_MINUTE = env_int("CHATSITE_MESSAGES_PER_MINUTE", 20)
CHATSITE_MAX_CONCURRENT_ANSWERS = env_int("CHATSITE_MAX_CONCURRENT_ANSWERS", 3)
# Cheap actions on a socket (switching versions, unknown or bad frames; Stop is never
# limited) per user and process: this many a second, in bursts of up to _BURST.
CHATSITE_SOCKET_ACTIONS_PER_SECOND = env_float("CHATSITE_SOCKET_ACTIONS_PER_SECOND", 5.0)
CHATSITE_SOCKET_ACTIONS_BURST = env_int("CHATSITE_SOCKET_ACTIONS_BURST", 20)
# Open sockets (pages) per user and process, the two kinds together (0: no cap).
CHATSITE_MAX_SOCKETS_PER_USER = env_int("CHATSITE_MAX_SOCKETS_PER_USER", 30)
# Each process beats for its answers; an answer whose beat is older than STALE_AFTER
# belonged to a dead process and is marked interrupted (at start-up and periodically).
CHATSITE_HEARTBEAT_INTERVAL = env_float("CHATSITE_HEARTBEAT_INTERVAL", 5.0)
CHATSITE_STALE_AFTER = env_float("CHATSITE_STALE_AFTER", 20.0)

# --- Logging: never the API key ---------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "chatsite.logging.RedactSecretsFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact"], "stream": sys.stderr}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
    },
}
