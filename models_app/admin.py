"""Admin for feature sets, featurizing jobs, model versions and training runs: for looking, rarely for editing.

Services own every change of state; the admin shows the rows and lets nobody edit what the workers write.
"""

from __future__ import annotations

from django.contrib import admin

from .models import FeatureJob, FeatureSet, FeatureShard, ModelVersion, TrainingRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services and workers; editing them by hand would break what they record."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class FeatureShardInline(admin.TabularInline):
    model = FeatureShard
    extra = 0
    fields = ("number", "rows", "first_example_id", "last_example_id", "size_bytes", "sha256", "path", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeatureSet)
class FeatureSetAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "featurizer", "version", "dim", "sparse", "rows", "updated_at")
    list_filter = ("featurizer", "project")
    search_fields = ("version",)
    inlines = [FeatureShardInline]


@admin.register(FeatureShard)
class FeatureShardAdmin(ReadOnlyAdmin):
    list_display = ("id", "feature_set", "number", "rows", "first_example_id", "last_example_id", "created_at")
    list_filter = ("feature_set__project",)
    list_select_related = ("feature_set",)


@admin.register(FeatureJob)
class FeatureJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "featurizer", "state", "progress", "attempts", "message", "created_at")
    list_filter = ("state", "featurizer", "project")
    raw_id_fields = ("feature_set", "created_by")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "number", "status", "algorithm", "featurizer", "trained_at", "published_at")
    list_filter = ("status", "algorithm", "project")
    raw_id_fields = ("training_run",)


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "trigger", "state", "progress", "follow_up", "model_version", "created_at")
    list_filter = ("state", "trigger", "project")
    raw_id_fields = ("requested_by", "model_version")
