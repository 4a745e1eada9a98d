"""Changing a project's labeling settings and its labels' shortcut keys, in one transaction."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from django.db import transaction

from labeling.models import Label, Project
from labeling.project_settings import LabelingSettings, labeling_settings_get, labeling_settings_parse

logger = logging.getLogger(__name__)

# Keys the annotate page keeps for itself: s skips, u undoes, ? shows the keyboard help.
RESERVED_SHORTCUTS = frozenset({"s", "u", "?"})
ERROR_SHORTCUT_LENGTH = "A shortcut is a single character."
ERROR_SHORTCUT_RESERVED = "{key!r} is taken by the annotate page (s skips, u undoes, ? shows help); choose another key."
ERROR_SHORTCUT_TAKEN = "{key!r} is also the shortcut of {other!r}; each key can apply one label only."
ERROR_SHORTCUT_UNKNOWN_LABEL = "Label {label_id} is not a label of this project."


class SettingsError(Exception):
    """The settings cannot be saved as given; `errors` maps a setting name or a label id to its message."""

    def __init__(self, errors: dict[str | int, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def label_shortcuts_check(*, labels: list[Label], shortcuts: dict[int, str]) -> tuple[dict[int, str], dict[int, str]]:
    """Return the shortcut every label will have after the change (lowercased) and any problems, by label id.

    A key is one character (surrounding blanks are dropped), not one of the annotate page's own keys, and unique
    in the project (checked against the labels left unchanged too); an empty key removes the shortcut.
    """
    known = {label.pk: label for label in labels}
    final = {label.pk: label.shortcut for label in labels}
    errors: dict[int, str] = {}
    for label_id, raw in shortcuts.items():
        if label_id not in known:
            errors[label_id] = ERROR_SHORTCUT_UNKNOWN_LABEL.format(label_id=label_id)
            continue
        key = (raw or "").strip().lower()
        if len(key) > 1:
            errors[label_id] = ERROR_SHORTCUT_LENGTH
        elif key in RESERVED_SHORTCUTS:
            errors[label_id] = ERROR_SHORTCUT_RESERVED.format(key=key)
        else:
            final[label_id] = key
    owners: dict[str, int] = {}
    for label in labels:
        key = final[label.pk]
        if not key or label.pk in errors:
            continue
        if key in owners:
            # Blame the label whose key changes, so a label that keeps its key is not the one marked wrong.
            first, second = owners[key], label.pk
            blamed, other = (
                (first, second) if _changes(known[first], final) and not _changes(label, final) else (second, first)
            )
            errors[blamed] = ERROR_SHORTCUT_TAKEN.format(key=key, other=known[other].name)
        else:
            owners[key] = label.pk
    return final, errors


def _changes(label: Label, final: dict[int, str]) -> bool:
    return label.shortcut != final[label.pk]


def labeling_settings_update(
    *, project: Project, data: dict[str, Any], labels_shortcuts: dict[int, str] | None = None, user: Any = None
) -> LabelingSettings:
    """Save the project's labeling settings (keys missing from `data` keep their value) and label shortcuts.

    Everything is saved or nothing: SettingsError lists every problem found. When the overlap changes, the
    queue's slots are matched to it by a background task once this transaction commits. `user` is the admin
    making the change, named in the log.
    """
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        before = labeling_settings_get(locked)
        errors: dict[str | int, str] = {}
        try:
            settings = labeling_settings_parse({**asdict(before), **data})
        except ValueError as exc:
            settings = before
            errors[_setting_named_in(str(exc), data)] = str(exc)
        labels = list(Label.objects.select_for_update().filter(project_id=project.pk).order_by("order", "name"))
        final, shortcut_errors = label_shortcuts_check(labels=labels, shortcuts=labels_shortcuts or {})
        errors.update(shortcut_errors)
        if errors:
            raise SettingsError(errors)
        locked.settings = {**(locked.settings or {}), "labeling": asdict(settings)}
        locked.save(update_fields=["settings"])
        project.settings = locked.settings
        _shortcuts_save(labels=labels, final=final)
        if settings.overlap != before.overlap:
            overlap_sync_enqueue(project_id=project.pk)
    logger.info("Labeling settings of %s saved by %s: %s", project.slug, getattr(user, "pk", None), asdict(settings))
    return settings


def _setting_named_in(message: str, data: dict[str, Any]) -> str:
    """Return the setting a parse error names (its messages start with the setting's name), else '__all__'."""
    return next((name for name in data if message.startswith(f"{name} ")), "__all__")


def _shortcuts_save(*, labels: list[Label], final: dict[int, str]) -> None:
    """Write changed shortcuts in two passes, clearing first, so swapping two keys never trips the unique index."""
    changed = [label for label in labels if label.shortcut != final[label.pk]]
    if not changed:
        return
    Label.objects.filter(pk__in=[label.pk for label in changed]).update(shortcut="")
    for label in changed:
        label.shortcut = final[label.pk]
        if label.shortcut:
            Label.objects.filter(pk=label.pk).update(shortcut=label.shortcut)


def overlap_sync_enqueue(*, project_id: int) -> None:
    """Match the queue's slots to the new overlap in a worker, once the current transaction commits."""
    from labeling.tasks import queue_overlap_sync_task

    queue_overlap_sync_task.delay_on_commit(project_id)
