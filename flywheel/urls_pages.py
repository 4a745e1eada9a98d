"""Routes of the flywheel's own pages, under /p/<slug>/ beside the labeling and model pages."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "flywheel"

urlpatterns = [
    path("p/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
]
