"""Django settings for running Django's own ``tests/cache`` against the adapter."""

from __future__ import annotations

from framework_suites.backends import SECRET, configure

SECRET_KEY = SECRET
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "cache",  # Django's tests/cache, for its Poll model
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
# One cachehub cache per provider; every test class points all of Django's aliases
# (default, prefix, v2, custom_key, cull, ...) at one of them with LOCATION.
CACHEHUB_CACHES = configure("django:")
CACHES = {
    "default": {
        "BACKEND": "cachehub.contrib.django.CacheHubCache",
        "LOCATION": CACHEHUB_CACHES["memory"],
    }
}
