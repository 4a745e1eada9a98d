"""The annotate page (being written)."""

from django.http import Http404


def _pending(*args, **kwargs):
    raise Http404("Not built yet.")


annotate = annotate_submit = annotate_skip = annotate_undo = annotate_heartbeat = _pending
