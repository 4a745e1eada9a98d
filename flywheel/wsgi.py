"""WSGI entry point for gunicorn."""

import gc
import os
import sys

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")

# A request thread that gets its database answer back waits for the interpreter lock; by default another
# thread of the same worker may keep it for 5 ms. Requests spend most of their time in short database waits,
# so a shorter switch interval trims the slowest requests when threads share a worker (WEB_SWITCH_INTERVAL_MS).
sys.setswitchinterval(float(os.environ.get("WEB_SWITCH_INTERVAL_MS") or 1) / 1000)

application = get_wsgi_application()

# Load the URL patterns (and with them the API and its schemas) now rather than on the first request, then
# move everything loaded so far out of the garbage collector's sight. The app's ~100k long-lived objects would
# otherwise be walked by every full collection: a pause of tens of milliseconds for every request in flight.
get_resolver().url_patterns  # noqa: B018 - loading them is the point
gc.freeze()
