"""What a project needs next, in order: the advice on the project home and the dashboard.

Each rule reads one fact of the flywheel (examples, labels, training, the gate, publishing, LLM review, conflicts,
the queue, feedback) and, when it applies, says in one step what to do and links the page where it is done.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q
from django.urls import NoReverseMatch, reverse

from labeling import selectors
from labeling.models import (
    HUMAN_KINDS,
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    ExampleOrigin,
    JobState,
    Project,
    ProjectRole,
    QueueState,
)
from labeling.permissions import role_allows
from labeling.selectors.quality import conflict_summary
from models_app.models import Deployment, GateDecision, ModelVersion, ModelVersionStatus, TrainingRun
from models_app.project_settings import learning_settings_get, serving_settings_get

# The kinds of step: something to do, something running to follow, an optional improvement.
ACTION = "action"
PROGRESS = "progress"
TIP = "tip"


@dataclass(frozen=True)
class Step:
    """One piece of advice: a short imperative title, the sentence that explains it, and the page that does it.

    `url` is empty when the role cannot open the page that would do it (the detail says whom to ask). Steps are
    listed by `priority`, lowest first: training runs (10–15), importing the first examples (20), the gate's
    verdicts (30–35), conflicts (40), LLM review (45), labels for a first model (50), feedback (55), an empty
    queue (60), keep labeling (80), optional tips (90).
    """

    title: str
    detail: str
    url: str
    kind: str = ACTION
    priority: int = 50


def _url(name: str, project: Project, **kwargs: object) -> str:
    return reverse(name, kwargs={"slug": project.slug, **kwargs})


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (plural or word + 's')}"


def next_steps(project: Project, role: str) -> list[Step]:
    """Return what the role should do next in the project, most pressing first.

    Annotators get their one step (label the queue); reviewers and admins get every step that applies to the
    whole flywheel, in a fixed number of queries.
    """
    progress = selectors.queue_progress(project=project)
    ready = progress[QueueState.READY]
    if not role_allows(role, ProjectRole.REVIEWER):
        return [_annotate_step(project, ready)]
    is_admin = role_allows(role, ProjectRole.ADMIN)
    labeled = Annotation.objects.filter(example_id=OuterRef("pk"), status__in=LIVE_STATUSES)
    examples = Example.objects.filter(project_id=project.pk).aggregate(
        total=Count("id"), feedback=Count("id", filter=Q(origin=ExampleOrigin.FEEDBACK) & ~Q(Exists(labeled)))
    )
    if not examples["total"]:
        return [_import_step(project, is_admin, first=True)]
    steps: list[Step] = []
    labels = Annotation.objects.filter(example__project_id=project.pk).aggregate(
        human=Count("id", filter=Q(kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES)),
        llm_pending=Count("id", filter=Q(kind=AnnotationKind.LLM, status=AnnotationStatus.PENDING)),
    )
    run = (
        TrainingRun.objects.filter(project_id=project.pk)
        .order_by("-id")
        .values_list("pk", "state", "message", "labels_at_start")
        .first()
    )
    latest = (
        ModelVersion.objects.filter(project_id=project.pk).order_by("-number").values_list("pk", "number", "status")
    ).first()
    steps += _model_steps(project, run, latest)
    needed = learning_settings_get(project).retrain_every_labels
    human = labels["human"]
    steps += _first_model_steps(project, human=human, needed=needed, ready=ready, run=run, latest=latest)
    if labels["llm_pending"]:
        steps.append(
            Step(
                title=f"Review {_plural(labels['llm_pending'], 'LLM label')}",
                detail="Accept, reject or correct the LLM's suggestions; accepted ones train the next model.",
                url=_url("labeling:llm_review", project),
                priority=45,
            )
        )
    conflicts = conflict_summary(project=project).open if human else 0
    if conflicts:
        steps.append(
            Step(
                title=f"Settle {_plural(conflicts, 'conflict')}",
                detail="Annotators disagree on these examples; choose the right label on the Quality page.",
                url=_url("labeling:quality", project),
                priority=40,
            )
        )
    deployment = (
        Deployment.objects.filter(project_id=project.pk).values_list("model_version__number", "rule_set_id").first()
    )
    if deployment is not None and examples["feedback"]:
        steps.append(
            Step(
                title=f"Label {_plural(examples['feedback'], 'feedback example')}",
                detail=f"Predictions v{deployment[0]} was unsure about came back as examples; labeling them teaches "
                "the next model where it struggles.",
                url=_url("labeling:annotate", project),
                priority=55,
            )
        )
    if ready or not progress[QueueState.LEASED]:
        since_run = human - (run[3] if run is not None else 0)
        annotate = _url("labeling:annotate", project)
        steps += _queue_steps(
            project,
            ready,
            is_admin,
            labeling=any(step.url == annotate for step in steps),
            until_retrain=max(needed - since_run, 0),
        )
    if deployment is not None and deployment[1] is None:
        steps += _rules_step(project)
    return sorted(steps, key=lambda step: step.priority)


def _first_model_steps(
    project: Project, *, human: int, needed: int, ready: int, run: tuple | None, latest: tuple | None
) -> list[Step]:
    """Say how to get labels, and a first model once there are enough of them."""
    if human == 0:
        if not ready:
            return []  # the queue's own step says how to fill it
        return [
            Step(
                title=f"Start annotating: {_plural(ready, 'item')} ready in the queue",
                detail=f"Nothing is labeled yet. A first model trains once people have given {needed:,} labels.",
                url=_url("labeling:annotate", project),
                priority=50,
            )
        ]
    if latest is not None or (run is not None and run[1] in (JobState.QUEUED, JobState.RUNNING)):
        return []
    if human < needed:
        return [
            Step(
                title=f"Label {needed - human:,} more for a first model",
                detail=f"{_plural(human, 'human label')} so far; the first model trains automatically at {needed:,}.",
                url=_url("labeling:annotate", project),
                priority=50,
            )
        ]
    return [
        Step(
            title="Train the first model",
            detail=f"{_plural(human, 'human label')} are enough to train one; press Retrain now on the models page.",
            url=_url("models_app:model_list", project),
            priority=50,
        )
    ]


def _annotate_step(project: Project, ready: int) -> Step:
    if ready:
        return Step(
            title=f"Label the next items: {_plural(ready, 'item')} ready",
            detail="The queue serves the most useful example first; each label counts toward the next model.",
            url=_url("labeling:annotate", project),
        )
    return Step(
        title="Nothing to label right now",
        detail="The queue is empty; new items arrive when examples are imported or the queue is rebuilt.",
        url=_url("labeling:annotate", project),
        kind=PROGRESS,
    )


def _import_step(project: Project, is_admin: bool, *, first: bool) -> Step:
    title = "Import examples to label" if first else "Everything is labeled: import more examples"
    detail = "Upload a CSV, JSON Lines or Label Studio file; labels in it count as people's labels."
    if not is_admin:
        detail = "Only a project admin can import; ask one to upload a CSV, JSON Lines or Label Studio file."
    return Step(
        title=title,
        detail=detail,
        url=_url("labeling:import_upload", project) if is_admin else "",
        priority=20 if first else 60,
    )


def _model_steps(project: Project, run: tuple | None, latest: tuple | None) -> list[Step]:
    """Say what training and the gate need: follow a run, read a failed run, read the gate's no, publish a pass.

    `run` is the newest training run's (id, state, message, labels at start), `latest` the newest version's
    (id, number, status); either may be None.
    """
    steps = []
    if run is not None and run[1] in (JobState.QUEUED, JobState.RUNNING):
        waiting = run[1] == JobState.QUEUED
        steps.append(
            Step(
                title="A training run is waiting for a worker" if waiting else "A model is training: follow it",
                detail=run[2] or "Its progress, then its scores, show on the run's page.",
                url=_url("models_app:training_run", project, run_id=run[0]),
                kind=PROGRESS,
                priority=10,
            )
        )
    elif run is not None and run[1] == JobState.FAILED:
        steps.append(
            Step(
                title="The last training run failed: read why",
                detail=run[2] or "The run's page says what went wrong; retrain once it is fixed.",
                url=_url("models_app:training_run", project, run_id=run[0]),
                priority=15,
            )
        )
    if latest is None:
        return steps
    pk, number, status = latest
    gate = GateDecision.objects.filter(model_version_id=pk).order_by("-id").values_list("passed", "reasons__0").first()
    url = _url("models_app:model_detail", project, number=number)
    if status == ModelVersionStatus.REJECTED:
        reason = (gate[1] if gate is not None else "") or "It did not beat the published model on the shared holdout."
        steps.append(
            Step(
                title=f"v{number} was rejected by the gate: read why",
                detail=f"{reason} The published model keeps serving; an admin can publish v{number} anyway, "
                "with a reason.",
                url=url,
                priority=30,
            )
        )
    elif status == ModelVersionStatus.EVALUATED and gate is not None and gate[0] and not _auto_publish(project):
        steps.append(
            Step(
                title=f"Publish v{number}",
                detail="It passed the gate; automatic publishing is off, so it waits for an admin to publish it.",
                url=url,
                priority=35,
            )
        )
    return steps


def _auto_publish(project: Project) -> bool:
    return serving_settings_get(project).auto_publish


def _queue_steps(project: Project, ready: int, is_admin: bool, *, labeling: bool, until_retrain: int) -> list[Step]:
    """Say what the queue needs: a rebuild or more examples when nothing is left in it, else to keep labeling."""
    if not ready:
        unqueued = selectors.unqueued_example_count(project=project)
        if unqueued:
            return [
                Step(
                    title="Rebuild the queue",
                    detail=f"It is empty while {_plural(unqueued, 'example')} wait outside it.",
                    url=_url("models_app:queue_ranking", project),
                    priority=60,
                )
            ]
        return [_import_step(project, is_admin, first=False)]
    if labeling:
        return []
    return [
        Step(
            title=f"Keep labeling: {_plural(ready, 'item')} ready",
            detail=f"The next model trains after {_plural(until_retrain, 'more human label')}."
            if until_retrain
            else "Enough new labels for the next model; it trains at the next check.",
            url=_url("labeling:annotate", project),
            priority=80,
        )
    ]


def _rules_step(project: Project) -> list[Step]:
    """Suggest business rules once a model serves without any, when the rules page exists."""
    try:
        url = _url("models_app:rules", project)
    except NoReverseMatch:
        return []
    return [
        Step(
            title="Add business rules (optional)",
            detail="Rules run after the model: force, forbid or abstain on cases you already know the answer to.",
            url=url,
            kind=TIP,
            priority=90,
        )
    ]
