"""The settings page and service: bounds, label shortcuts, one transaction, and the overlap sync after commit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Label, QueueItem
from labeling.project_settings import LabelingSettings, labeling_settings_get
from labeling.services import settings as settings_services
from labeling.services.settings import (
    ERROR_SHORTCUT_LENGTH,
    ERROR_SHORTCUT_RESERVED,
    ERROR_SHORTCUT_TAKEN,
    SettingsError,
    labeling_settings_update,
)
from labeling.tasks import queue_overlap_sync_task
from labeling.views.reviewing import MESSAGE_SETTINGS_SAVED

from .factories import run_import

pytestmark = pytest.mark.django_db

VALID = {"overlap": "2", "lease_minutes": "15", "gold_rate_percent": "10", "show_suggestions": "on"}


def _url(project) -> str:
    return reverse("labeling:project_settings", kwargs={"slug": project.slug})


def _labels(project) -> dict[str, Label]:
    return {label.name: label for label in Label.objects.filter(project=project)}


def _post(client, project, **changes):
    labels = _labels(project)
    data = {**VALID, **{f"shortcut_{label.pk}": label.shortcut for label in labels.values()}}
    for key, value in changes.items():
        name = f"shortcut_{labels[key[len('key_') :]].pk}" if key.startswith("key_") else key
        if value is None:
            data.pop(name)
        else:
            data[name] = value
    return client.post(_url(project), data)


def _slots(project) -> dict[int, int]:
    counts: dict[int, int] = {}
    for example_id in QueueItem.objects.filter(project=project).values_list("example_id", flat=True):
        counts[example_id] = counts.get(example_id, 0) + 1
    return counts


def test_get_shows_the_current_values(client_for, users, project):
    project.settings = {"labeling": {"overlap": 3, "lease_minutes": 25, "gold_rate": 0.125, "show_suggestions": True}}
    project.save()
    Label.objects.filter(project=project, name="spam").update(shortcut="x")

    page = client_for(users["admin"]).get(_url(project)).content.decode()

    assert 'name="overlap" id="id_overlap" min="1" max="5" step="1" required value="3"' in page
    assert 'required value="25"' in page and 'value="12.5"' in page
    assert 'id="id_show_suggestions" checked' in page
    assert 'value="x" maxlength="1"' in page
    assert "anchoring bias" in page


def test_saving_writes_the_settings_and_shortcuts(client_for, users, project):
    project.settings = {"other_app": {"keep": True}}
    project.save()

    client = client_for(users["admin"])

    response = _post(client, project, key_spam="Q", key_ham="7")

    assert response.status_code == 303 and response["Location"] == _url(project)
    project.refresh_from_db()
    assert project.settings["labeling"] == {
        "overlap": 2,
        "lease_minutes": 15,
        "gold_rate": 0.1,
        "show_suggestions": True,
        "curriculum_items": 0,
    }
    assert project.settings["other_app"] == {"keep": True}
    assert labeling_settings_get(project) == LabelingSettings(2, 15, 0.1, True)
    labels = _labels(project)
    assert (labels["spam"].shortcut, labels["ham"].shortcut) == ("q", "7")
    page = client.get(response["Location"]).content.decode()
    assert MESSAGE_SETTINGS_SAVED in page and "Overlap changed from 1 to 2" in page


def test_an_unchecked_box_turns_suggestions_off(client_for, users, project):
    project.settings = {"labeling": {"show_suggestions": True}}
    project.save()

    _post(client_for(users["admin"]), project, show_suggestions=None)

    project.refresh_from_db()
    assert labeling_settings_get(project).show_suggestions is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("overlap", "6", "less than or equal to 5"),
        ("overlap", "0", "greater than or equal to 1"),
        ("overlap", "1.5", "Enter a whole number"),
        ("lease_minutes", "0", "greater than or equal to 1"),
        ("lease_minutes", "121", "less than or equal to 120"),
        ("gold_rate_percent", "50.1", "less than or equal to 50"),
        ("gold_rate_percent", "-1", "greater than or equal to 0"),
        ("gold_rate_percent", "abc", "Enter a number"),
    ],
)
def test_out_of_range_values_are_shown_inline_and_nothing_is_saved(client_for, users, project, field, value, message):
    response = _post(client_for(users["admin"]), project, key_spam="a", **{field: value})

    page = response.content.decode()
    assert response.status_code == 400
    assert message in page and "Nothing was saved" in page
    assert 'aria-invalid="true"' in page.split(f'name="{field}"')[1].split(">")[0]
    project.refresh_from_db()
    assert "labeling" not in project.settings
    assert _labels(project)["spam"].shortcut == "1"


@pytest.mark.parametrize(
    ("spam", "ham", "message"),
    [
        ("a", "a", ERROR_SHORTCUT_TAKEN.format(key="a", other="spam")),
        ("a", "A", ERROR_SHORTCUT_TAKEN.format(key="a", other="spam")),
        ("s", "2", ERROR_SHORTCUT_RESERVED.format(key="s")),
        ("U", "2", ERROR_SHORTCUT_RESERVED.format(key="u")),
        ("?", "2", ERROR_SHORTCUT_RESERVED.format(key="?")),
        ("ab", "2", ERROR_SHORTCUT_LENGTH),
        ("2", "2", ERROR_SHORTCUT_TAKEN.format(key="2", other="ham")),
        ("1", "1", ERROR_SHORTCUT_TAKEN.format(key="1", other="spam")),
    ],
)
def test_bad_shortcuts_are_refused_with_the_settings(client_for, users, project, spam, ham, message):
    response = _post(client_for(users["admin"]), project, key_spam=spam, key_ham=ham)

    page = response.content.decode()
    assert response.status_code == 400
    assert message.replace("'", "&#x27;") in page
    project.refresh_from_db()
    assert "labeling" not in project.settings, "settings and shortcuts are saved together or not at all"
    assert {name: label.shortcut for name, label in _labels(project).items()} == {"spam": "1", "ham": "2"}


def test_a_new_key_may_not_take_an_unchanged_labels_key(project):
    Label.objects.filter(project=project, name="spam").update(shortcut="k")
    ham = _labels(project)["ham"]

    with pytest.raises(SettingsError) as caught:
        labeling_settings_update(project=project, data={}, labels_shortcuts={ham.pk: "k"}, user=None)

    assert caught.value.errors == {ham.pk: ERROR_SHORTCUT_TAKEN.format(key="k", other="spam")}


def test_two_labels_can_swap_keys(client_for, users, project):
    Label.objects.filter(project=project, name="spam").update(shortcut="a")
    Label.objects.filter(project=project, name="ham").update(shortcut="b")

    response = _post(client_for(users["admin"]), project, key_spam="b", key_ham="a")

    assert response.status_code == 303
    labels = _labels(project)
    assert (labels["spam"].shortcut, labels["ham"].shortcut) == ("b", "a")


def test_an_empty_key_removes_the_shortcut(client_for, users, project):
    Label.objects.filter(project=project, name="spam").update(shortcut="a")

    _post(client_for(users["admin"]), project, key_spam="")

    assert _labels(project)["spam"].shortcut == ""


def test_the_service_keeps_unnamed_settings_and_reports_bad_values(project):
    labeling_settings_update(project=project, data={"lease_minutes": 30}, labels_shortcuts=None, user=None)

    project.refresh_from_db()
    assert labeling_settings_get(project) == LabelingSettings(lease_minutes=30)
    with pytest.raises(SettingsError) as caught:
        labeling_settings_update(project=project, data={"gold_rate": 0.9}, user=None)
    assert list(caught.value.errors) == ["gold_rate"]
    assert labeling_settings_get(project).gold_rate == LabelingSettings().gold_rate


@pytest.mark.parametrize(("overlap", "scheduled"), [("1", 0), ("3", 1)])
def test_the_overlap_sync_is_scheduled_only_when_overlap_changes(
    client_for, users, project, django_capture_on_commit_callbacks, overlap, scheduled
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _post(client_for(users["admin"]), project, overlap=overlap)

    assert response.status_code == 303
    assert len(callbacks) == scheduled


def test_changing_overlap_matches_the_queue_after_commit(
    client_for, users, project, monkeypatch, django_capture_on_commit_callbacks
):
    run_import(project, "text,date,label\none,2024-01-01,\ntwo,2024-01-02,\nthree,2024-01-03,\n")
    assert set(_slots(project).values()) == {1}
    sent = []

    def run_now(project_id):
        sent.append(project_id)
        return queue_overlap_sync_task.run(project_id)

    monkeypatch.setattr(queue_overlap_sync_task, "delay", run_now)

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client_for(users["admin"]), project, overlap="3")

    assert response.status_code == 303 and sent == [project.pk]
    assert set(_slots(project).values()) == {3}
    with django_capture_on_commit_callbacks(execute=True):
        _post(client_for(users["admin"]), project, overlap="2")
    assert set(_slots(project).values()) == {2}


def test_the_enqueue_step_is_the_named_function(project, monkeypatch, django_capture_on_commit_callbacks):
    called = []
    monkeypatch.setattr(settings_services, "overlap_sync_enqueue", lambda *, project_id: called.append(project_id))

    labeling_settings_update(project=project, data={"overlap": 2}, user=None)
    labeling_settings_update(project=project, data={"overlap": 2}, user=None)

    assert called == [project.pk]


def test_a_reviewer_cannot_post_settings(client_for, users, project):
    response = client_for(users["reviewer"]).post(_url(project), VALID)

    assert response.status_code == 403
    project.refresh_from_db()
    assert "labeling" not in project.settings


def test_range_and_shortcut_problems_show_together(client_for, users, project):
    response = _post(client_for(users["admin"]), project, overlap="9", key_spam="s")

    page = response.content.decode()
    assert response.status_code == 400
    assert "less than or equal to 5" in page
    assert ERROR_SHORTCUT_RESERVED.format(key="s").replace("'", "&#x27;") in page
    assert "fix the 2 fields marked below" in page


@pytest.mark.django_db
def test_one_unusable_stored_value_falls_back_alone(project):
    project.settings = {"labeling": {"overlap": 3, "gold_rate": "lots", "show_suggestions": True, "unknown": 1}}
    assert labeling_settings_get(project) == LabelingSettings(overlap=3, show_suggestions=True)
    project.settings = {"labeling": ["not", "a", "dict"]}
    assert labeling_settings_get(project) == LabelingSettings()


def test_the_curriculum_length_is_saved_and_bounded(client_for, users, project):
    client = client_for(users["admin"])
    assert _post(client, project, curriculum_items="20").status_code == 303
    project.refresh_from_db()
    assert project.settings["labeling"]["curriculum_items"] == 20
    # Not sent (an older form): the saved value stays.
    assert _post(client, project).status_code == 303
    project.refresh_from_db()
    assert project.settings["labeling"]["curriculum_items"] == 20
    response = _post(client, project, curriculum_items="501")
    assert response.status_code == 400 and "less than or equal to 500" in response.content.decode()
