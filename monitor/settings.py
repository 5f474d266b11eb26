"""Settings: environment variables only, parsed strictly (a bad value is an error, not a default).

Local default: SQLite and kombu's filesystem broker under data/ (MONITOR_DATA_DIR), secrets generated on first use
under data/local-secrets/. Importing this module writes nothing: each folder is made by the code that first needs
it (the SQLite connection, the Celery app, monitor/platform/local_secrets.py), so a read-only container starts.
Serving any host beyond localhost requires real SECRET_KEY, DATA_ENCRYPTION_KEYS (or DATA_ENCRYPTION_KEY) and EVIDENCE_SIGNING_KEY.
"""
from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise

from monitor.access.client_address import parse_trusted_proxies
from monitor.platform.crypto import check_fernet_key, parse_data_keys
from monitor.platform.local_secrets import secret_setting
from monitor.platform.outbound import parse_allowed_networks
from monitor.platform.sqlite_connection import FolderMakingConnection

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MONITOR_DATA_DIR", BASE_DIR / "data"))

env = environ.Env()
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def strict_bool(name: str, *, default: bool) -> bool:
    """django-environ reads any unknown word as False; a typo in a security setting must fail instead."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)") from None


def strict_int(name: str, *, default: int, minimum: int) -> int:
    """An integer setting; anything else (or one below `minimum`) is an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at least {minimum:,}")
    return value


def email_flag(config: dict, name: str) -> bool:
    """EMAIL_USE_TLS / EMAIL_USE_SSL from EMAIL_URL's scheme or its ?use_tls= / ?use_ssl=, which must be 0 or 1."""
    value = config.get(name, False)
    if value not in (True, False, 0, 1):
        raise ImproperlyConfigured(f"EMAIL_URL: {name.lower().removeprefix('email_')}={value!r} must be 0 or 1")
    return bool(value)


DEBUG = strict_bool("DEBUG", default=False)
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=LOCAL_HOSTS)
SERVES_ONLY_LOCALHOST = all(host in LOCAL_HOSTS for host in ALLOWED_HOSTS)
SITE_URL = env.url("SITE_URL", default="http://127.0.0.1:8000").geturl().rstrip("/")


# Each secret left unset on a localhost-only install is a lazy string, generated into DATA_DIR/local-secrets/ the
# first time a process uses it (monitor/platform/local_secrets.py); read it with str() where a real str is needed.
LOCAL_SECRETS_DIR = DATA_DIR / "local-secrets"
SECRET_KEY = secret_setting("SECRET_KEY", configured=env.str("SECRET_KEY", default=""), folder=LOCAL_SECRETS_DIR,
                            serves_only_localhost=SERVES_ONLY_LOCALHOST)
EVIDENCE_SIGNING_KEY = secret_setting("EVIDENCE_SIGNING_KEY", configured=env.str("EVIDENCE_SIGNING_KEY", default=""),
                                      folder=LOCAL_SECRETS_DIR, serves_only_localhost=SERVES_ONLY_LOCALHOST)
# The data keys, newest first (monitor/platform/crypto.py): the newest encrypts, every one decrypts; rotate_data_key
# re-encrypts what older ones wrote. DATA_ENCRYPTION_KEY, one key, is still read: set one of the two, not both.
if env.str("DATA_ENCRYPTION_KEYS", default="").strip():
    if env.str("DATA_ENCRYPTION_KEY", default=""):
        raise ImproperlyConfigured("DATA_ENCRYPTION_KEYS and DATA_ENCRYPTION_KEY are both set: set one, not both "
                                   "(list the single key in DATA_ENCRYPTION_KEYS)")
    DATA_ENCRYPTION_KEYS: list[str | Promise] = list(parse_data_keys(env.str("DATA_ENCRYPTION_KEYS"),
                                                                     name="DATA_ENCRYPTION_KEYS"))
else:
    _data_key = secret_setting("DATA_ENCRYPTION_KEY", configured=env.str("DATA_ENCRYPTION_KEY", default=""),
                               folder=LOCAL_SECRETS_DIR, serves_only_localhost=SERVES_ONLY_LOCALHOST)
    if isinstance(_data_key, str):  # set in the environment: checked now (a generated one is always valid)
        check_fernet_key(_data_key, where="DATA_ENCRYPTION_KEY")
    DATA_ENCRYPTION_KEYS = [_data_key]

INSTALLED_APPS = [
    "monitor.apps.MonitorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "axes",
    "mozilla_django_oidc",
    "monitor",
    "audits",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A NUL character in the path, query string or a form field: 400 before any view (PostgreSQL cannot hold one).
    "monitor.platform.nul_characters.NulCharacterMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who is acting, for the trail entries the model signals write (monitor/trail/changes.py).
    "monitor.trail.actor.TrailActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "monitor.platform.security_headers.PermissionsPolicyMiddleware",
    # A view that meets a dropped or refused database connection answers 503 + Retry-After, not a 500 page.
    "monitor.platform.unavailable.DatabaseUnavailableMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "monitor.urls"
WSGI_APPLICATION = "monitor.wsgi.application"

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
                "monitor.access.roles.roles_context",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'monitor.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real Celery worker started by the tests sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-monitor.sqlite3")}
    # The connection makes the file's folder on first connect, not this module at import.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE",
                                       "factory": FolderMakingConnection}
    # WAL lets the web server read while the worker writes.
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # A kept connection is checked before a request reuses it: after a database restart the first request of each
    # web worker otherwise met the dead connection and answered 503 (it failed the Redis-outage fault test, which
    # runs after the PostgreSQL-restart test against the same gunicorn: seen failing `.ci/run` on an unchanged main).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes counts failed logins first; the role backend then checks the password.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "monitor.access.roles.RolePermissionBackend"]
# Local username/password logins (the admin turns them off once single sign-on works).
LOCAL_LOGIN = strict_bool("LOCAL_LOGIN", default=True)
# Single sign-on (OpenID Connect, mozilla-django-oidc): on when OIDC_RP_CLIENT_ID is set.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile groups")
OIDC_ROLE_CLAIM = env.str("OIDC_ROLE_CLAIM", default="groups")
OIDC_ROLE_MAP = env.str("OIDC_ROLE_MAP", default="")  # "sec-team=security,grc=compliance"
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_STORE_ID_TOKEN = False
# The ID token's `iss` must be exactly this (the provider's discovery document names it).
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default="")
# Personal API tokens of SSO accounts expire after this many days: the provider may have removed the person since.
SSO_TOKEN_MAX_AGE_DAYS = strict_int("SSO_TOKEN_MAX_AGE_DAYS", default=90, minimum=1)
# Every personal API token expires after this many days unless issued with its own --expires-days (0: never).
API_TOKEN_MAX_AGE_DAYS = strict_int("API_TOKEN_MAX_AGE_DAYS", default=365, minimum=0)
LOGIN_REDIRECT_URL_FAILURE = "/sso/denied/"
if OIDC_RP_CLIENT_ID:
    if not OIDC_OP_ISSUER:
        raise ImproperlyConfigured("OIDC_OP_ISSUER: set it to the provider's issuer (the `issuer` of its "
                                   "/.well-known/openid-configuration) when OIDC_RP_CLIENT_ID is set")
    AUTHENTICATION_BACKENDS.append("monitor.access.sso.RoleMappingOIDCBackend")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# WhiteNoise serves static files straight from the finders below, so nothing has to be collected; STATIC_ROOT is
# only where `collectstatic` would write (it makes the folder). Unset, WhiteNoise has no folder to look for.
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
# plotly.js comes from the plotly package itself: no CDN, and always the version charts.py targets.
_PLOTLY_DIR = Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", _PLOTLY_DIR)]
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
# Flash messages live in the server-side session, not a cookie: one of them shows a new webhook signing secret once.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = strict_bool("SECURE_COOKIES", default=not SERVES_ONLY_LOCALHOST)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
# A production install serves HTTPS: redirect plain HTTP and send HSTS (each can be turned off, e.g. behind a
# TLS-terminating proxy that already does it). Locally all of it is off, so http://127.0.0.1:8000 works.
SECURE_SSL_REDIRECT = strict_bool("SECURE_SSL_REDIRECT", default=not SERVES_ONLY_LOCALHOST)
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=0 if SERVES_ONLY_LOCALHOST else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = strict_bool("HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = strict_bool("HSTS_PRELOAD", default=SECURE_HSTS_SECONDS > 0)
if strict_bool("TRUST_X_FORWARDED_PROTO", default=False):
    # Only behind a proxy that sets the header itself; otherwise a client could claim HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# No inline scripts anywhere (figure data travels as application/json); Plotly and the progress bar set styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"

# Login lockout (django-axes): LOGIN_FAILURE_LIMIT failures for one username (from any address: guessing spread
# over many addresses) or from one address (against many usernames) lock it for LOGIN_LOCKOUT_MINUTES.
# Each lockout is written to the audit log; `manage.py axes_reset_username NAME` / `axes_reset_ip IP` lift one.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # successful logins are already in the hash-chained audit log
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Behind a reverse proxy every request comes from the proxy: list its networks (comma-separated CIDRs, strict) and
# the client is the right-most X-Forwarded-For entry that is not one of them (monitor/access/client_address.py),
# for the lockout above, the trail and failed-login folding. Empty: the peer's own address; the header is ignored.
try:
    TRUSTED_PROXIES = [str(network) for network in parse_trusted_proxies(os.environ.get("TRUSTED_PROXIES", ""))]
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from exc
AXES_CLIENT_IP_CALLABLE = "monitor.access.client_address.client_address"

# Ingestion batches may be large; everything else stays small.
INGEST_MAX_BYTES = strict_int("INGEST_MAX_BYTES", default=32 * 1024 * 1024, minimum=1)
INGEST_MAX_QUERIES = strict_int("INGEST_MAX_QUERIES", default=10_000, minimum=1)
# Longest period one evidence bundle covers (its trail segment runs from the period's start to the export).
EVIDENCE_MAX_PERIOD_DAYS = strict_int("EVIDENCE_MAX_PERIOD_DAYS", default=366, minimum=1)
PREDICT_MAX_ROWS = 1_000
# The raw query log (see monitor/ingestion/partitions.py and retention.py): a model's own retention_days
# overrides QUERY_RETENTION_DAYS; partitions are made this many days ahead; a retry whose request was first
# stamped by the server on the previous day is still recognised within INGEST_RETRY_WINDOW_HOURS of midnight.
QUERY_RETENTION_DAYS = env.int("QUERY_RETENTION_DAYS", default=90)
QUERY_PARTITIONS_AHEAD_DAYS = env.int("QUERY_PARTITIONS_AHEAD_DAYS", default=3)
INGEST_RETRY_WINDOW_HOURS = env.float("INGEST_RETRY_WINDOW_HOURS", default=6.0)
ARTIFACT_MAX_BYTES = env.int("ARTIFACT_MAX_BYTES", default=200 * 1024 * 1024)
DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=100 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler", "monitor.platform.uploads.CappedTemporaryFileUploadHandler"]
# One deadline for a whole call of a remote model (connect, send, the full answer), as NOTIFY_TIMEOUT for a message.
REMOTE_MODEL_TIMEOUT = env.float("REMOTE_MODEL_TIMEOUT", default=10.0)
# Outbound HTTP to user-given URLs (model endpoints, webhooks), see monitor/platform/outbound.py: metadata and
# link-local addresses are always refused; loopback only on a localhost-only install unless set here; private
# ranges only inside OUTBOUND_ALLOWED_NETWORKS (comma-separated CIDRs, e.g. 10.20.0.0/16,fd12:3456::/48).
OUTBOUND_ALLOW_LOOPBACK = strict_bool("OUTBOUND_ALLOW_LOOPBACK", default=SERVES_ONLY_LOCALHOST)
if strict_bool("OUTBOUND_ALLOW_PRIVATE", default=False):
    raise ImproperlyConfigured("OUTBOUND_ALLOW_PRIVATE is gone: private networks are refused unless named, so list "
                               "the ones model endpoints and webhooks live in as OUTBOUND_ALLOWED_NETWORKS "
                               "(comma-separated CIDRs, e.g. 10.20.0.0/16)")
try:
    OUTBOUND_ALLOWED_NETWORKS = parse_allowed_networks(os.environ.get("OUTBOUND_ALLOWED_NETWORKS", ""))
except ValueError as exc:
    raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {exc}") from exc
# Rows (logged or predicted) one API token may send per minute; 0 turns the limit off. A token's own
# queries_per_minute (Django admin) overrides it. Beyond it the API answers 429 with Retry-After.
TOKEN_QUERIES_PER_MINUTE = env.int("TOKEN_QUERIES_PER_MINUTE", default=1_000_000)

# Celery: JSON only, acks late so a killed worker's task is redelivered, hard time limits.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, with each message file complete when a consumer can see it (kombu's own loses
    # the messages a worker takes while they are being written: monitor/platform/filesystem_broker.py).
    CELERY_BROKER_TRANSPORT = "monitor.platform.filesystem_broker:Transport"
    # The folders are made by the first channel a process opens on the broker (monitor/platform/filesystem_broker.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 60 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 55 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULER = "monitor.celery:FolderMakingScheduler"  # makes the schedule file's folder on first use
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "monitor.tasks.record_heartbeat", "schedule": 60.0},
    "deliver-notifications": {"task": "monitor.tasks.deliver_notifications", "schedule": 15.0},
    "alert-housekeeping": {"task": "monitor.tasks.alert_housekeeping", "schedule": 60.0},
    "prune-token-usage": {"task": "monitor.tasks.prune_token_usage", "schedule": 600.0},
    "daily-digest": {"task": "monitor.tasks.send_digests", "schedule": crontab(hour=7, minute=0)},
    "schedule-audits": {"task": "audits.tasks.schedule_audits", "schedule": 300.0},
    "scan-queries": {"task": "monitor.tasks.scan_all_models", "schedule": 60.0},
    "reap-stuck-audits": {"task": "audits.tasks.reap_stuck_audits", "schedule": 120.0},
    "fold-rollups": {"task": "monitor.tasks.fold_query_rollups", "schedule": 30.0},
    "expire-restrictions": {"task": "monitor.tasks.expire_client_restrictions", "schedule": 60.0},
    "fold-login-failures": {"task": "monitor.tasks.fold_login_failures", "schedule": 60.0},
    "query-partitions": {"task": "monitor.tasks.maintain_query_partitions", "schedule": 3600.0},
    "query-partition-statistics": {"task": "monitor.tasks.analyze_query_partitions", "schedule": 60.0},
    "query-retention": {"task": "monitor.tasks.enforce_query_retention", "schedule": crontab(hour=3, minute=15)},
    "sign-trail-head": {"task": "audits.tasks.sign_trail_head", "schedule": crontab(minute=5)},
}
# Query scanning: rows read per chunk, reference window for calibration, one scan per model at a time.
SCAN_CHUNK_ROWS = env.int("SCAN_CHUNK_ROWS", default=200_000)
SCAN_LEASE_SECONDS = env.int("SCAN_LEASE_SECONDS", default=900)
# A part commits its findings, its clients' state rows and its watermark together every this many queries (or once
# its changed state rows hold this many bytes), and at its end (monitor/detection/state_rows.py).
SCAN_STATE_FLUSH_ROWS = env.int("SCAN_STATE_FLUSH_ROWS", default=1_000_000)
SCAN_STATE_FLUSH_BYTES = env.int("SCAN_STATE_FLUSH_BYTES", default=128 * 2**20)
# Queries per minute the gateway answers a client under a "throttle" restriction.
RESTRICTED_QUERIES_PER_MINUTE = env.int("RESTRICTED_QUERIES_PER_MINUTE", default=10)
# Parts of one model's scan that workers run at once: client-hash shards (+ one part comparing clients).
SCAN_SHARDS = env.int("SCAN_SHARDS", default=1)
DETECTOR_CALIBRATION_ROWS = env.int("DETECTOR_CALIBRATION_ROWS", default=1_000_000)
DETECTOR_MIN_CALIBRATION_ROWS = env.int("DETECTOR_MIN_CALIBRATION_ROWS", default=500)
# While a model's calibration window is under DetectorState.ADVISED_CLIENT_DAYS, the scan calibrates again once the
# client-days logged since reach (this - 1) times the window's, i.e. the log is this many times the window (1: never).
DETECTOR_RECALIBRATE_GROWTH = env.float("DETECTOR_RECALIBRATE_GROWTH", default=2.0)
# A running audit writes a heartbeat with every progress step; silence this long means its worker is gone.
AUDIT_STALE_SECONDS = env.int("AUDIT_STALE_SECONDS", default=600)
AUDIT_TIME_LIMIT_SECONDS = env.int("AUDIT_TIME_LIMIT_SECONDS", default=3600)
# Open critical alerts are repeated to their channels this often until someone acknowledges them.
ALERT_REMINDER_SECONDS = env.int("ALERT_REMINDER_SECONDS", default=4 * 3600)
# Temporary delivery failures (timeouts, 5xx, SMTP down) are retried for this long.
DELIVERY_RETRY_SECONDS = env.int("DELIVERY_RETRY_SECONDS", default=24 * 3600)
# The wait before the first retry of a failed delivery; each later retry waits twice as long (at most 1 h).
DELIVERY_BACKOFF_SECONDS = env.int("DELIVERY_BACKOFF_SECONDS", default=30)
# A row left "sending" this long belongs to a worker that died mid-send (an HTTP send takes at most NOTIFY_TIMEOUT
# in all, an email NOTIFY_TIMEOUT per network step): it is sent again, with the same idempotency key. Keep it
# well above NOTIFY_TIMEOUT.
DELIVERY_STUCK_SECONDS = env.int("DELIVERY_STUCK_SECONDS", default=600)
NOTIFY_TIMEOUT = env.float("NOTIFY_TIMEOUT", default=10.0)

# EMAIL_URL (django-environ's scheme: smtp://, smtp+tls://, smtp+ssl://, consolemail://, filemail://) sets each
# of Django's e-mail settings below; Slack and the other channels carry their own targets (Django admin / API).
email_url = env.email_url("EMAIL_URL", default="consolemail://")
if email_url.get("OPTIONS"):
    raise ImproperlyConfigured(f"EMAIL_URL: unknown option(s) {sorted(email_url['OPTIONS'])}; only use_tls and "
                               "use_ssl are read (the SMTP timeout is NOTIFY_TIMEOUT)")
EMAIL_BACKEND = email_url["EMAIL_BACKEND"]
EMAIL_HOST = email_url["EMAIL_HOST"] or "localhost"
EMAIL_USE_TLS = email_flag(email_url, "EMAIL_USE_TLS")
EMAIL_USE_SSL = email_flag(email_url, "EMAIL_USE_SSL")
EMAIL_PORT = email_url["EMAIL_PORT"] or (465 if EMAIL_USE_SSL else 25)  # smtplib's own defaults when none is given
EMAIL_HOST_USER = email_url["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = email_url["EMAIL_HOST_PASSWORD"] or ""
EMAIL_FILE_PATH = email_url["EMAIL_FILE_PATH"] or None  # filemail:///path only
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="monitor@localhost")
# PagerDuty channels send Events API v2 events here (tests and PagerDuty's EU service region point it elsewhere).
PAGERDUTY_EVENTS_URL = env.url("PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue").geturl()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
