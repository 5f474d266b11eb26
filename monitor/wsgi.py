"""WSGI entry point (gunicorn monitor.wsgi).

Once Django is set up, every view's module is imported (the URL conf), and the objects that made — about 237,000:
Django, numpy, scikit-learn, scipy — are frozen out of the garbage collector's full collections (`gc.freeze`).
Without that, each full collection walked all of them: a request that builds many objects (a 5,000-row batch
parsed into dicts and lists) set several off, and parsing one such batch took 25 ms on average in a warm process,
up to 110 ms, against 7 ms frozen. The frozen objects live as long as the process does anyway.
"""
import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imports every view's module now, before the freeze
gc.freeze()
