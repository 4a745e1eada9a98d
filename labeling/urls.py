"""Routes of the labeling pages; every project page lives under /p/<slug>/."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "labeling"

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("p/<slug:slug>/", views.project_overview, name="project_overview"),
    path("p/<slug:slug>/examples/", views.example_browse, name="example_browse"),
    path("p/<slug:slug>/review/", views.annotation_review, name="annotation_review"),
    path("p/<slug:slug>/import/", views.import_upload, name="import_upload"),
    path("p/<slug:slug>/imports/<int:job_id>/", views.import_job, name="import_job"),
    path("p/<slug:slug>/imports/<int:job_id>/report.csv", views.import_report, name="import_report"),
    path("p/<slug:slug>/export/", views.project_export, name="project_export"),
    path("p/<slug:slug>/members/", views.member_list, name="member_list"),
    path("p/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path("p/<slug:slug>/annotate/submit/", views.annotate_submit, name="annotate_submit"),
    path("p/<slug:slug>/annotate/skip/", views.annotate_skip, name="annotate_skip"),
    path("p/<slug:slug>/annotate/undo/", views.annotate_undo, name="annotate_undo"),
    path("p/<slug:slug>/annotate/heartbeat/", views.annotate_heartbeat, name="annotate_heartbeat"),
    path("p/<slug:slug>/quality/", views.quality, name="quality"),
    path("p/<slug:slug>/quality/adjudicate/<int:example_id>/", views.adjudicate, name="adjudicate"),
    path("p/<slug:slug>/gold/", views.gold_list, name="gold_list"),
    path("p/<slug:slug>/queue/", views.queue_overview, name="queue_overview"),
    path("p/<slug:slug>/settings/", views.project_settings, name="project_settings"),
    path("p/<slug:slug>/llm/review/", views.llm_review, name="llm_review"),
    path("p/<slug:slug>/llm/review/act/", views.llm_review_act, name="llm_review_act"),
]
