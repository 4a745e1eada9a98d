from django.contrib import admin

from .models import (
    Annotation,
    AnnotationEvent,
    ApiToken,
    Example,
    ImportJob,
    Label,
    Membership,
    Project,
    QueueItem,
    QueueSkip,
)


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0
    fields = ("name", "description", "parent", "shortcut", "order")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    inlines = [LabelInline, MembershipInline]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "shortcut", "order", "parent")
    list_filter = ("project",)
    search_fields = ("name",)


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "short_text", "observed_at", "origin", "ingested_at")
    list_filter = ("project", "origin")
    search_fields = ("text",)
    raw_id_fields = ("import_job",)
    readonly_fields = ("content_hash",)

    @admin.display(description="text")
    def short_text(self, obj: Example) -> str:
        return obj.text[:80]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("id", "example", "label", "kind", "status", "author", "labeler_name", "created_at")
    list_filter = ("kind", "status", "label__project")
    raw_id_fields = ("example", "author", "import_job")
    list_select_related = ("example", "label", "author")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role", "project")
    raw_id_fields = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")
    raw_id_fields = ("user",)


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "filename", "source", "state", "progress", "error_count", "created_at")
    list_filter = ("state", "source", "project")
    readonly_fields = ("result", "errors", "options")


@admin.register(QueueItem)
class QueueItemAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "example_id", "slot", "state", "priority", "reason_code", "lease_owner")
    list_filter = ("project", "state", "reason_code")
    raw_id_fields = ("example", "lease_owner", "suggested_label")
    readonly_fields = ("lease_id", "leased_at", "lease_expires_at", "done_at", "created_at")


@admin.register(AnnotationEvent)
class AnnotationEventAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "example_id", "actor", "created_at")
    list_filter = ("project", "kind")
    raw_id_fields = ("example", "annotation", "actor")

    def has_change_permission(self, request, obj=None) -> bool:
        """Events are a record of what people did; they are never edited."""
        return False


@admin.register(QueueSkip)
class QueueSkipAdmin(admin.ModelAdmin):
    list_display = ("id", "example_id", "user", "created_at")
    raw_id_fields = ("example", "user")
