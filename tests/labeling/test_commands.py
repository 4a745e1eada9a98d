"""The add_member and create_api_token management commands."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from labeling import services
from labeling.models import ApiToken, Membership
from labeling.services.projects import ERROR_BAD_ROLE


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Hash test passwords quickly; the `users` fixture makes five users per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_add_member_creates_a_missing_user(project):
    out, _ = run("add_member", "reviews", "newbie", "--role", "reviewer")

    user = get_user_model().objects.get(username="newbie")
    assert Membership.objects.get(project=project, user=user).role == "reviewer"
    assert not user.has_usable_password()
    assert "Created user newbie" in out
    assert "reviewer of reviews" in out


@pytest.mark.django_db
def test_add_member_defaults_to_annotator(project):
    run("add_member", "reviews", "someone")

    assert Membership.objects.get(project=project, user__username="someone").role == "annotator"


@pytest.mark.django_db
def test_add_member_adds_an_existing_user(project, make_user):
    carol = make_user("carol")

    out, _ = run("add_member", "reviews", "carol", "--role", "admin")

    assert Membership.objects.get(project=project, user=carol).role == "admin"
    assert get_user_model().objects.filter(username="carol").count() == 1
    carol.refresh_from_db()
    assert carol.has_usable_password()
    assert "Made existing user carol admin of reviews" in out


@pytest.mark.django_db
def test_add_member_changes_a_role(project, users):
    out, _ = run("add_member", "reviews", "project-annotator", "--role", "admin")

    assert Membership.objects.get(project=project, user=users["annotator"]).role == "admin"
    assert Membership.objects.filter(project=project, user=users["annotator"]).count() == 1
    assert "from annotator to admin" in out


@pytest.mark.django_db
def test_add_member_with_the_same_role_says_nothing_changed(project, users):
    out, _ = run("add_member", "reviews", "project-reviewer", "--role", "reviewer")

    assert "nothing changed" in out


@pytest.mark.django_db
def test_add_member_refuses_a_bad_role(project):
    with pytest.raises(CommandError) as error:
        run("add_member", "reviews", "newbie", "--role", "boss")

    assert str(error.value) == ERROR_BAD_ROLE.format(role="boss")
    assert not get_user_model().objects.filter(username="newbie").exists()


@pytest.mark.django_db
def test_add_member_refuses_an_unknown_project(db):
    with pytest.raises(CommandError, match="No project with the slug 'nope'"):
        run("add_member", "nope", "newbie", "--role", "annotator")

    assert not get_user_model().objects.filter(username="newbie").exists()


@pytest.mark.django_db
def test_add_member_password_lets_the_user_log_in(project, make_user):
    out, _ = run("add_member", "reviews", "dana", "--role", "annotator", "--password", "a-long-passphrase-42")

    user = get_user_model().objects.get(username="dana")
    assert user.has_usable_password()
    assert user.check_password("a-long-passphrase-42")
    assert Client().login(username="dana", password="a-long-passphrase-42")
    assert "with the given password" in out
    assert "a-long-passphrase-42" not in out


@pytest.mark.django_db
def test_add_member_password_resets_an_existing_users_password(project, make_user):
    make_user("erin")

    out, _ = run("add_member", "reviews", "erin", "--password", "another-passphrase-7")

    assert get_user_model().objects.get(username="erin").check_password("another-passphrase-7")
    assert "Set a new password for erin" in out


@pytest.mark.django_db
def test_create_api_token_prints_the_token_last_on_its_own_line(project, users):
    out, err = run("create_api_token", "project-admin", "--name", "ci")

    raw = out.splitlines()[-1]
    assert out.endswith(raw + "\n")
    assert raw.startswith("fw_") and " " not in raw
    assert raw not in err
    token = ApiToken.objects.get(user=users["admin"])
    assert token.name == "ci"
    assert "project-admin" in err and token.prefix in err
    assert services.api_token_authenticate(raw=raw).pk == users["admin"].pk
    response = Client().get("/api/v1/projects/reviews", headers={"authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    assert response.json()["role"] == "admin"


@pytest.mark.django_db
def test_create_api_token_makes_a_new_token_each_time(users):
    first, _ = run("create_api_token", "project-reviewer")
    second, _ = run("create_api_token", "project-reviewer")

    assert first.splitlines()[-1] != second.splitlines()[-1]
    assert ApiToken.objects.filter(user=users["reviewer"]).count() == 2


@pytest.mark.django_db
def test_create_api_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("create_api_token", "ghost")

    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_create_api_token_refuses_an_inactive_user(make_user):
    make_user("gone", is_active=False)

    with pytest.raises(CommandError, match="inactive"):
        run("create_api_token", "gone")
