"""What to do next: each step appears in the situation it is for, in order, and links the page that does it."""

from __future__ import annotations

import re

import pytest
from django.urls import NoReverseMatch, reverse

from flywheel.dashboard import next_steps
from labeling.models import AnnotationKind, AnnotationStatus, ExampleOrigin, JobState, QueueReason
from models_app.models import Deployment, ModelVersionStatus, TrainingRun, TrainingTrigger
from tests.flywheel.factories import label_add, queue_items_add, version_add
from tests.models_app.factories import examples_create


def _labels(project):
    return {label.name: label for label in project.labels.all()}


def _steps(project, role="admin"):
    return {step.title: step for step in next_steps(project, role)}


def _titled(steps, pattern: str):
    found = [step for title, step in steps.items() if re.search(pattern, title)]
    assert found, f"no step matches {pattern!r} in {list(steps)}"
    return found[0]


def test_no_examples_asks_an_admin_to_import_and_a_reviewer_to_ask_one(users, project):
    admin = _steps(project, "admin")
    assert list(admin) == ["Import examples to label"]
    assert admin["Import examples to label"].url == reverse("labeling:import_upload", kwargs={"slug": project.slug})
    reviewer = next_steps(project, "reviewer")
    assert [step.url for step in reviewer] == [""]
    assert "project admin" in reviewer[0].detail


def test_no_labels_says_start_annotating_with_the_ready_count(project):
    examples = examples_create(project, ["one", "two", "three"])
    queue_items_add(project, examples, QueueReason.EXPLORATION)

    step = _titled(_steps(project), r"^Start annotating: 3 items ready")

    assert step.url == reverse("labeling:annotate", kwargs={"slug": project.slug})


def test_too_few_labels_for_a_first_model_says_how_many_more(users, project):
    project.settings = {"learning": {"retrain_every_labels": 10}}
    project.save()
    spam = _labels(project)["spam"]
    examples = examples_create(project, [f"few {n}" for n in range(6)])
    for example in examples[:3]:
        label_add(example, spam, author=users["annotator"])
    queue_items_add(project, examples[3:], QueueReason.EXPLORATION)

    steps = _steps(project)

    assert _titled(steps, r"^Label 7 more for a first model$").url.endswith("/annotate/")
    assert not any(title.startswith("Keep labeling") for title in steps)


def test_enough_labels_and_no_model_says_train_it(users, project):
    project.settings = {"learning": {"retrain_every_labels": 2}}
    project.save()
    spam = _labels(project)["spam"]
    for example in examples_create(project, ["a", "b"]):
        label_add(example, spam, author=users["annotator"])

    step = _titled(_steps(project), r"^Train the first model$")

    assert step.url == reverse("models_app:model_list", kwargs={"slug": project.slug})


def test_a_running_training_run_comes_first_and_links_the_run(users, project):
    examples_create(project, ["a"])
    run = TrainingRun.objects.create(project=project, trigger=TrainingTrigger.BUTTON, state=JobState.RUNNING)

    steps = next_steps(project, "reviewer")

    assert steps[0].title == "A model is training: follow it"
    assert steps[0].kind == "progress"
    assert steps[0].url == reverse("models_app:training_run", kwargs={"slug": project.slug, "run_id": run.pk})
    assert not any(step.title == "Train the first model" for step in steps)


def test_a_failed_run_says_read_why(project):
    examples_create(project, ["a"])
    run = TrainingRun.objects.create(
        project=project, trigger=TrainingTrigger.LABELS, state=JobState.FAILED, message="Only one label is used."
    )

    step = _titled(_steps(project), r"^The last training run failed")

    assert step.detail == "Only one label is used."
    assert step.url.endswith(f"/models/runs/{run.pk}/")


def test_a_rejected_latest_version_says_read_the_gate(project):
    examples_create(project, ["a"])
    version_add(project, 1, status=ModelVersionStatus.PUBLISHED, gate=True)
    version_add(project, 2, status=ModelVersionStatus.REJECTED, gate=False, reason="Macro-F1 fell from 0.80 to 0.71.")

    step = _titled(_steps(project), r"^v2 was rejected by the gate")

    assert step.detail.startswith("Macro-F1 fell from 0.80 to 0.71.")
    assert step.url == reverse("models_app:model_detail", kwargs={"slug": project.slug, "number": 2})


@pytest.mark.parametrize("auto_publish", [False, True])
def test_a_passed_unpublished_version_says_publish_when_auto_publish_is_off(project, auto_publish):
    project.settings = {"serving": {"auto_publish": auto_publish}}
    project.save()
    examples_create(project, ["a"])
    version_add(project, 3, status=ModelVersionStatus.EVALUATED, gate=True)

    steps = _steps(project)

    if auto_publish:
        assert "Publish v3" not in steps
    else:
        assert steps["Publish v3"].url == reverse("models_app:model_detail", kwargs={"slug": project.slug, "number": 3})


def test_pending_llm_labels_say_review_them(project):
    spam = _labels(project)["spam"]
    for example in examples_create(project, ["a", "b"]):
        label_add(example, spam, kind=AnnotationKind.LLM, status=AnnotationStatus.PENDING, labeler="smollm2")

    step = _titled(_steps(project, "reviewer"), r"^Review 2 LLM labels$")

    assert step.url == reverse("labeling:llm_review", kwargs={"slug": project.slug})


def test_open_conflicts_say_settle_them_on_the_quality_page(users, project):
    spam, ham = _labels(project).values()
    first, second, agreed = examples_create(project, ["a", "b", "c"])
    for example in (first, second):
        label_add(example, spam, author=users["annotator"])
        label_add(example, ham, author=users["reviewer"])
    label_add(agreed, spam, author=users["annotator"])
    label_add(agreed, spam, author=users["reviewer"])
    label_add(second, ham, kind=AnnotationKind.ADJUDICATED, status=AnnotationStatus.ACCEPTED, author=users["admin"])

    step = _titled(_steps(project), r"^Settle 1 conflict$")

    assert step.url == reverse("labeling:quality", kwargs={"slug": project.slug})


def test_an_empty_queue_says_rebuild_when_examples_wait_outside_it(users, project):
    spam = _labels(project)["spam"]
    labeled, waiting = examples_create(project, ["labeled", "waiting"])
    label_add(labeled, spam, kind=AnnotationKind.IMPORTED)

    step = _titled(_steps(project), r"^Rebuild the queue$")

    assert "1 example wait" in step.detail
    assert step.url == reverse("models_app:queue_ranking", kwargs={"slug": project.slug})


def test_unlabeled_examples_outside_the_queue_say_rebuild_not_start_annotating(project):
    examples_create(project, ["a", "b"])

    steps = _steps(project, "reviewer")

    assert "Rebuild the queue" in steps
    assert not any(title.startswith("Start annotating") for title in steps)


def test_an_empty_queue_with_everything_labeled_says_import_more(users, project):
    spam = _labels(project)["spam"]
    for example in examples_create(project, ["a", "b"]):
        label_add(example, spam, kind=AnnotationKind.IMPORTED)

    admin = _titled(_steps(project, "admin"), r"^Everything is labeled")
    reviewer = _titled(_steps(project, "reviewer"), r"^Everything is labeled")

    assert admin.url == reverse("labeling:import_upload", kwargs={"slug": project.slug})
    assert reviewer.url == ""


def test_feedback_examples_after_publishing_say_label_them(users, project):
    spam = _labels(project)["spam"]
    version = version_add(project, 1, status=ModelVersionStatus.PUBLISHED, gate=True)
    Deployment.objects.create(project=project, model_version=version)
    feedback = examples_create(project, ["unsure one", "unsure two", "already labeled"])
    project.examples.filter(pk__in=[example.pk for example in feedback]).update(origin=ExampleOrigin.FEEDBACK)
    label_add(feedback[2], spam, author=users["annotator"])
    queue_items_add(project, feedback[:2], QueueReason.FEEDBACK)

    step = _titled(_steps(project), r"^Label 2 feedback examples$")

    assert "v1" in step.detail
    assert step.url == reverse("labeling:annotate", kwargs={"slug": project.slug})


def test_rules_are_suggested_only_when_their_page_exists(project):
    version = version_add(project, 1, status=ModelVersionStatus.PUBLISHED, gate=True)
    Deployment.objects.create(project=project, model_version=version)
    examples_create(project, ["a"])

    tips = [step for step in next_steps(project, "admin") if step.kind == "tip"]

    try:
        rules_url = reverse("models_app:rules", kwargs={"slug": project.slug})
    except NoReverseMatch:
        assert tips == []
    else:
        assert [step.url for step in tips] == [rules_url]


def test_keep_labeling_says_how_many_labels_until_the_next_model(users, project):
    project.settings = {"learning": {"retrain_every_labels": 5}}
    project.save()
    spam = _labels(project)["spam"]
    examples = examples_create(project, [f"keep {n}" for n in range(6)])
    for example in examples[:3]:
        label_add(example, spam, author=users["annotator"])
    TrainingRun.objects.create(
        project=project, trigger=TrainingTrigger.LABELS, state=JobState.SUCCEEDED, labels_at_start=1
    )
    version_add(project, 1, status=ModelVersionStatus.PUBLISHED, gate=True)
    queue_items_add(project, examples[3:], QueueReason.UNCERTAIN)

    step = _titled(_steps(project), r"^Keep labeling: 3 items ready$")

    assert step.detail == "The next model trains after 3 more human labels."


def test_annotators_get_only_their_own_step(users, project):
    examples = examples_create(project, ["a", "b"])
    queue_items_add(project, examples, QueueReason.EXPLORATION)
    spam = _labels(project)["spam"]
    label_add(examples[0], spam, kind=AnnotationKind.LLM, status=AnnotationStatus.PENDING, labeler="smollm2")

    steps = next_steps(project, "annotator")

    assert [(step.title, step.url) for step in steps] == [
        ("Label the next items: 2 items ready", reverse("labeling:annotate", kwargs={"slug": project.slug}))
    ]
