"""Quality, gold, queue and settings pages (being written)."""

from django.http import Http404


def _pending(*args, **kwargs):
    raise Http404("Not built yet.")


quality = adjudicate = gold_list = queue_overview = project_settings = _pending
