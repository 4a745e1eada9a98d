"""Shared fixtures: users for every role, a project with labels, clients logged in as each."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def project(db):
    from labeling import services

    return services.project_create(
        slug="reviews",
        name="Product reviews",
        labels=[
            {"name": "spam", "description": "Advertising or links unrelated to the video."},
            {"name": "ham", "description": "A genuine comment."},
        ],
    )


@pytest.fixture
def other_project(db):
    from labeling import services

    return services.project_create(slug="other", name="Other team", labels=[{"name": "yes"}, {"name": "no"}])


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str, **extra):
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
        return user

    return make


@pytest.fixture
def users(project, make_user):
    """One user per access level: a global admin, project admin, reviewer, annotator and a non-member."""
    from django.contrib.auth.models import Group

    from labeling import services

    global_admin = make_user("boss")
    global_admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    result = {"global_admin": global_admin, "outsider": make_user("outsider")}
    for role in ("admin", "reviewer", "annotator"):
        user = make_user(f"project-{role}")
        services.member_add(project=project, username=user.username, role=role)
        result[role] = user
    return result


@pytest.fixture
def client_for(client):
    """Return a test client logged in as the given user (None for anonymous)."""
    from django.test import Client

    def make(user):
        if user is None:
            return Client()
        logged_in = Client()
        logged_in.force_login(user)
        return logged_in

    return make
