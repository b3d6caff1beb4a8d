"""Manifest parsing: valid manifests load, every malformed one is refused with a reason."""

from __future__ import annotations

import pytest
import yaml

from schemas.errors import ErrorCode, InferenceError
from streams.inference.manifest import (
    REFERENCE_STATUS,
    ModelManifest,
    WindowNormalisation,
    ZScoreNormalisation,
    parse_manifest,
)
from tests.unit.inference.inference_builders import REGISTRY_DIR, manifest_data

pytestmark = pytest.mark.requirement("RS-INF-01")


def _parse(data: object) -> object:
    return parse_manifest(yaml.safe_dump(data, allow_unicode=True))


def _reason_of(data: object) -> str:
    with pytest.raises(InferenceError) as caught:
        _parse(data)
    assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED
    return caught.value.reason


class TestValidManifests:
    """Manifests that must load."""

    def test_minimal_manifest_parses_with_defaults(self) -> None:
        """A minimal manifest gets the documented defaults for tensors, layout and negative."""
        manifest = parse_manifest(yaml.safe_dump(manifest_data(), allow_unicode=True))
        assert (manifest.input.tensor, manifest.output.tensor) == ("image", "scores")
        assert manifest.input.layout == "NCHW"
        assert manifest.output.negative_decision == "no_finding"
        assert manifest.model_id == "fake-model@1.0.0"

    def test_lists_become_tuples(self) -> None:
        """YAML lists are read as immutable tuples."""
        manifest = parse_manifest(yaml.safe_dump(manifest_data(), allow_unicode=True))
        assert manifest.input.modalities == ("CT",)
        assert manifest.output.labels == ("lesion",)

    @pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
    def test_committed_reference_manifests_parse(self, version: str) -> None:
        """The shipped reference manifests are valid and say they are not for clinical use."""
        path = REGISTRY_DIR / "lesion-detector" / version / "manifest.yaml"
        manifest = parse_manifest(path.read_text(encoding="utf-8"))
        assert manifest.status == REFERENCE_STATUS
        assert isinstance(manifest.input.normalisation, WindowNormalisation)

    def test_window_integers_are_accepted_as_floats(self) -> None:
        """An integer window (center: 40) is a valid float, not a type error."""
        data = manifest_data()
        data["input"]["normalisation"] = {"kind": "window", "center": 40, "width": 400}
        normalisation = parse_manifest(yaml.safe_dump(data)).input.normalisation
        assert isinstance(normalisation, WindowNormalisation)
        assert (normalisation.center, normalisation.width) == (40.0, 400.0)

    def test_zscore_with_fixed_statistics(self) -> None:
        """A z-score normalisation may fix mean and std together."""
        data = manifest_data()
        data["input"]["normalisation"] = {"kind": "zscore", "mean": 0.5, "std": 0.25}
        normalisation = parse_manifest(yaml.safe_dump(data)).input.normalisation
        assert normalisation == ZScoreNormalisation(kind="zscore", mean=0.5, std=0.25)


class TestInvalidManifests:
    """Manifests that must be refused with MODEL_LOAD_FAILED."""

    @pytest.mark.parametrize("field", ["name", "version", "runtime", "weights", "input"])
    def test_missing_required_field(self, field: str) -> None:
        """Each required top-level field is required."""
        data = manifest_data()
        del data[field]
        assert field in _reason_of(data)

    def test_unknown_field_is_refused(self) -> None:
        """extra=forbid: a misspelt key is an error, not ignored."""
        assert "thresold" in _reason_of(manifest_data(thresold=0.5))

    def test_string_threshold_is_not_coerced(self) -> None:
        """Strict mode: '0.5' as a string is not turned into a number."""
        data = manifest_data()
        data["output"]["thresholds"] = {"lesion": "0.5"}
        assert "thresholds" in _reason_of(data)

    def test_string_default_flag_is_not_coerced(self) -> None:
        """Strict mode on the top level too: default: "true" is not a boolean."""
        assert "default" in _reason_of(manifest_data(default="true"))

    def test_unquoted_numeric_version_is_refused(self) -> None:
        """version: 1.0 (a YAML float) is refused instead of silently becoming '1.0'."""
        assert "version" in _reason_of(manifest_data(version=1.0))

    def test_thresholds_must_cover_every_label(self) -> None:
        """A label without a threshold cannot be decided."""
        data = manifest_data()
        data["output"]["labels"] = ["lesion", "nodule"]
        assert "thresholds must name exactly the labels" in _reason_of(data)

    def test_duplicate_labels_are_refused(self) -> None:
        """Labels are unique."""
        data = manifest_data()
        data["output"]["labels"] = ["lesion", "lesion"]
        assert "unique" in _reason_of(data)

    def test_label_must_be_an_identifier(self) -> None:
        """Labels are lower-case identifiers."""
        data = manifest_data()
        data["output"]["labels"] = ["Lesion Big"]
        data["output"]["thresholds"] = {"Lesion Big": 0.5}
        assert "lower-case" in _reason_of(data)

    def test_negative_decision_must_not_be_a_label(self) -> None:
        """The negative decision cannot collide with a positive label."""
        data = manifest_data()
        data["output"]["negative_decision"] = "lesion"
        assert "negative_decision" in _reason_of(data)

    def test_joined_labels_must_fit_the_decision_field(self) -> None:
        """All labels joined with '+' must fit the event's 64-character decision."""
        labels = [f"label_number_{i}" for i in range(6)]
        data = manifest_data()
        data["output"]["labels"] = labels
        data["output"]["thresholds"] = dict.fromkeys(labels, 0.5)
        assert "exceed" in _reason_of(data)

    @pytest.mark.parametrize("file", ["../other/model.onnx", "/etc/passwd.onnx", "model.bin"])
    def test_weights_file_must_be_a_plain_onnx_name(self, file: str) -> None:
        """The weights file cannot point outside its version directory."""
        data = manifest_data(weights={"file": file, "sha256": "a" * 64})
        assert "weights.file" in _reason_of(data)

    def test_weights_digest_must_be_hex_sha256(self) -> None:
        """The declared digest is 64 lower-case hex characters."""
        data = manifest_data(weights={"file": "model.onnx", "sha256": "ABC"})
        assert "weights.sha256" in _reason_of(data)

    def test_unknown_runtime_is_refused(self) -> None:
        """Only onnxruntime is supported."""
        assert "runtime" in _reason_of(manifest_data(runtime="tensorflow"))

    def test_unknown_normalisation_kind_is_refused(self) -> None:
        """The normalisation is a closed set of kinds."""
        data = manifest_data()
        data["input"]["normalisation"] = {"kind": "histogram"}
        assert "normalisation" in _reason_of(data)

    def test_zscore_mean_without_std_is_refused(self) -> None:
        """Half-fixed statistics are ambiguous."""
        data = manifest_data()
        data["input"]["normalisation"] = {"kind": "zscore", "mean": 0.5}
        assert "both mean and std" in _reason_of(data)

    def test_non_positive_window_width_is_refused(self) -> None:
        """A window width of 0 would divide by zero."""
        data = manifest_data()
        data["input"]["normalisation"] = {"kind": "window", "center": 40, "width": 0}
        assert "width" in _reason_of(data)

    def test_lower_case_modality_is_refused(self) -> None:
        """Modalities are DICOM codes such as CT, MR."""
        data = manifest_data()
        data["input"]["modalities"] = ["ct"]
        assert "modality" in _reason_of(data)

    def test_yaml_syntax_error_is_refused(self) -> None:
        """Broken YAML is a load failure, not a crash."""
        with pytest.raises(InferenceError) as caught:
            parse_manifest("name: [unclosed")
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED
        assert "not valid YAML" in caught.value.reason

    def test_yaml_dates_are_refused(self) -> None:
        """Values JSON cannot represent (a YAML date) are refused, not stringified."""
        with pytest.raises(InferenceError, match="not valid YAML"):
            parse_manifest("name: fake\ntrained: 2024-01-01\n")

    def test_top_level_must_be_a_mapping(self) -> None:
        """A list is not a manifest."""
        with pytest.raises(InferenceError, match="mapping"):
            parse_manifest("- a\n- b\n")


class TestReferenceDistribution:
    """The optional reference distribution drift monitoring compares live traffic with."""

    @staticmethod
    def _with_reference(**reference: object) -> dict[str, object]:
        ramp = [i / 20 for i in range(21)]
        data = manifest_data()
        data["reference"] = {
            "source": "held-out set",
            "scores": {"lesion": ramp},
            "statistics": {"mean": ramp},
            **reference,
        }
        return data

    def test_quantiles_parse(self) -> None:
        """21 non-decreasing quantiles per score label and statistic."""
        manifest = _parse(self._with_reference())
        assert isinstance(manifest, ModelManifest)
        assert manifest.reference is not None
        assert manifest.reference.scores["lesion"][-1] == 1.0

    def test_wrong_number_of_quantiles_is_refused(self) -> None:
        """Quantiles are given at exactly the 21 documented levels."""
        assert "scores" in _reason_of(self._with_reference(scores={"lesion": [0.0, 1.0]}))

    def test_decreasing_quantiles_are_refused(self) -> None:
        """Quantiles cannot go down."""
        values = [i / 20 for i in range(21)][::-1]
        assert "must not decrease" in _reason_of(self._with_reference(scores={"lesion": values}))

    def test_unknown_label_is_refused(self) -> None:
        """Reference scores name only the model's labels."""
        ramp = [i / 20 for i in range(21)]
        assert "unknown labels: mass" in _reason_of(self._with_reference(scores={"mass": ramp}))

    def test_default_is_optional(self) -> None:
        """A manifest without the legacy default flag parses (rollout.yaml decides the mode)."""
        data = manifest_data()
        del data["default"]
        manifest = _parse(data)
        assert isinstance(manifest, ModelManifest)
        assert manifest.default is False
