"""boundary_threshold: auto -> the best-F1 threshold the heads stage calibrated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spino_core.config import config_from_dict
from spino_core.errors import ConfigError, SpinoError
from spino_core.inference import multiscale_predict
from spino_core.inference.calibration import (
    CALIBRATION_FILE,
    calibrated_threshold,
    calibration_record,
)


def test_auto_is_a_valid_setting_and_other_words_are_not() -> None:
    cfg = config_from_dict({}, ["pseudo_label.boundary_threshold=auto"])
    assert cfg.pseudo_label.boundary_threshold == "auto"
    with pytest.raises(ConfigError, match=r"boundary_threshold: expected a number.*'auto'"):
        config_from_dict({}, ["pseudo_label.boundary_threshold=best"])


def test_auto_stands_for_the_calibrated_value(tmp_path) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(calibration_record(0.17, 0.5)))
    assert calibrated_threshold(tmp_path) == 0.17


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "unreadable"),
        (json.dumps({"format": "spino-calibration/1", "boundary_threshold": 1.5}), "in \\(0, 1\\)"),
    ],
)
def test_missing_or_bad_calibration_names_the_file_and_the_fix(tmp_path, content, message):
    if content is not None:
        (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(SpinoError, match=f"{CALIBRATION_FILE}: .*{message}.*train-heads"):
        calibrated_threshold(tmp_path)


def test_unresolved_auto_never_reaches_the_labels() -> None:
    def predict(tiles, want_semantic=True, want_boundary=True):
        n, h, w = tiles.shape[:3]
        return np.full((n, 19, h, w), 1 / 19, np.float32), np.zeros((n, h, w), np.float32)

    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="'auto' is resolved from the heads' calibration"):
        multiscale_predict(image, predict, input_hw=(4, 4), semantic_scales=[1],
                           boundary_scales=[1], boundary_threshold="auto")  # fmt: skip
