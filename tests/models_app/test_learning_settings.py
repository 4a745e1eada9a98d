"""A project's learning settings: defaults, bounds, and a per-setting fallback for stored values that are unusable."""

from __future__ import annotations

import pytest

from models_app.ml.featurizers import FEATURIZERS
from models_app.models import FeaturizerName
from models_app.project_settings import (
    ERROR_SETTING_CHOICE,
    ERROR_SETTING_RANGE,
    ERROR_SETTING_TYPE,
    LearningSettings,
    learning_settings_as_dict,
    learning_settings_get,
    learning_settings_parse,
)

pytestmark = pytest.mark.django_db


def test_defaults_apply_when_nothing_is_stored(project):
    assert learning_settings_get(project) == LearningSettings(
        featurizer="hashing", holdout_share=0.2, retrain_every_labels=50, llm_label_weight=0.5, schedule_hours=24
    )


def test_stored_values_are_read_and_each_bad_one_falls_back_alone(project):
    project.settings = {
        "labeling": {"overlap": 2},
        "learning": {"featurizer": "minilm", "holdout_share": 0.9, "retrain_every_labels": 10, "schedule_hours": "x"},
    }
    assert learning_settings_get(project) == LearningSettings(featurizer="minilm", retrain_every_labels=10)
    project.settings = {"learning": ["not", "a", "dict"]}
    assert learning_settings_get(project) == LearningSettings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"featurizer": "tfidf"}, ERROR_SETTING_CHOICE.format(name="featurizer", choices="hashing, minilm")),
        ({"holdout_share": 0.01}, ERROR_SETTING_RANGE.format(name="holdout_share", low=0.05, high=0.5)),
        (
            {"retrain_every_labels": 2.5},
            ERROR_SETTING_TYPE.format(name="retrain_every_labels", expected="a whole number"),
        ),
        ({"llm_label_weight": True}, ERROR_SETTING_TYPE.format(name="llm_label_weight", expected="a number")),
        ({"schedule_hours": -1}, ERROR_SETTING_RANGE.format(name="schedule_hours", low=0, high=720)),
    ],
)
def test_parse_refuses_bad_values_with_a_clear_message(data, message):
    with pytest.raises(ValueError) as error:
        learning_settings_parse(data)
    assert str(error.value) == message


def test_zero_turns_the_schedule_off_and_the_dict_round_trips():
    parsed = learning_settings_parse({"schedule_hours": 0, "llm_label_weight": 0})
    assert parsed.schedule_hours == 0 and parsed.llm_label_weight == 0.0
    assert learning_settings_parse(learning_settings_as_dict(parsed)) == parsed


def test_featurizer_choices_match_the_ml_featurizers():
    assert list(FeaturizerName.values) == list(FEATURIZERS)
