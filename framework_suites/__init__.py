"""The frameworks' own test suites, unchanged, run against cachehub's adapters.

``nox -s frameworks`` (or ``python -m framework_suites`` in a venv with the frameworks
and cachehub installed) downloads the source distributions of the *installed* Django,
Flask-Caching and cachelib, extracts only their cache test files, starts a real Redis
and a local DynamoDB (moto), and runs:

* Django's ``BaseCacheTests`` through ``cachehub.contrib.django.CacheHubCache``;
* Flask-Caching's test suite with ``cachehub.contrib.flask_cache.CacheHubFlaskCache``
  as the ``CACHE_TYPE`` of its ``app`` fixture;
* cachelib's common backend mixins through ``cachehub.contrib.cachelib.CacheHubCachelib``;

each on the memory, Redis and DynamoDB providers, with the adapters' default
configuration (signed pickle keyed from the framework's secret). Tests left out are
listed, with their reasons, in :data:`framework_suites.backends.EXCLUDED` and in
docs/integrations.md.
"""
