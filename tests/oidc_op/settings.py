"""The test identity provider's settings (its own SQLite database, given by OP_DATABASE)."""
import os

SECRET_KEY = "test-identity-provider-only"  # noqa: S105  # a throwaway provider on loopback, for the SSO tests
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.messages", "oidc_provider"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
ROOT_URLCONF = "tests.oidc_op.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["OP_DATABASE"]}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
              "DIRS": [os.path.join(os.path.dirname(__file__), "templates")], "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth"]}}]
USE_TZ = True
LOGIN_URL = "/login/"
SITE_URL = os.environ.get("OP_URL", "http://127.0.0.1:8000")
OIDC_EXTRA_SCOPE_CLAIMS = "tests.oidc_op.claims.GroupsClaims"
OIDC_IDTOKEN_SUB_GENERATOR = "tests.oidc_op.quirks.subject"
OIDC_IDTOKEN_PROCESSING_HOOK = "tests.oidc_op.quirks.tamper_id_token"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
