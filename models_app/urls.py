"""Routes of the model pages, under /p/<slug>/models/ next to the labeling pages."""

from __future__ import annotations

from django.urls import path

from . import views, views_llm, views_rules, views_serving

app_name = "models_app"

urlpatterns = [
    path("p/<slug:slug>/models/", views.model_list, name="model_list"),
    path("p/<slug:slug>/models/retrain/", views.model_retrain, name="model_retrain"),
    path("p/<slug:slug>/models/<int:number>/", views.model_detail, name="model_detail"),
    path("p/<slug:slug>/models/<int:number>/publish/", views_serving.model_publish, name="model_publish"),
    path("p/<slug:slug>/models/serving-settings/", views_serving.serving_settings_save, name="serving_settings"),
    path("p/<slug:slug>/models/runs/<int:run_id>/", views.training_run, name="training_run"),
    path("p/<slug:slug>/queue/ranking/", views.queue_ranking, name="queue_ranking"),
    path("p/<slug:slug>/queue/ranking/rebuild/", views.queue_rebuild, name="queue_rebuild"),
    path("p/<slug:slug>/queue/ranking/settings/", views.queue_settings_save, name="queue_settings"),
    path("p/<slug:slug>/queue/ranking/builds/<int:build_id>/", views.queue_build, name="queue_build"),
    path("p/<slug:slug>/llm/", views_llm.llm, name="llm"),
    path("p/<slug:slug>/llm/prelabel/", views_llm.llm_prelabel, name="llm_prelabel"),
    path("p/<slug:slug>/llm/cancel/<int:job_id>/", views_llm.llm_cancel, name="llm_cancel"),
    path("p/<slug:slug>/llm/jobs/<int:job_id>/", views_llm.llm_job, name="llm_job"),
    path("p/<slug:slug>/llm/settings/", views_llm.llm_settings_save, name="llm_settings"),
    path("p/<slug:slug>/rules/", views_rules.rules, name="rules"),
    path("p/<slug:slug>/rules/preview/", views_rules.rules_preview, name="rules_preview"),
    path("p/<slug:slug>/rules/save/", views_rules.rules_save, name="rules_save"),
    path("p/<slug:slug>/rules/off/", views_rules.rules_off, name="rules_off"),
    path("p/<slug:slug>/rules/<int:number>/publish/", views_rules.rules_publish, name="rules_publish"),
]
