"""What a pseudo-label folder and a student checkpoint record of their settings: everything
the stage reads except what only changes how it runs (``config_sections.RUN_ONLY``), resolved.

Found in review: the resume guard was a hand-kept allow-list (a fusion option added later
would let an unfinished folder resume with mixed labels), recorded ``precision: auto`` before
resolving it (a folder begun on CPU in fp32 passed the guard when resumed in bf16 on a GPU),
and ``precision: fp32`` left the backbone in bf16 autocast on CUDA.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spino_core.config import BackboneConfig, PseudoLabelConfig, StudentConfig
from spino_core.config_sections import RUN_ONLY, recorded_settings
from spino_core.devices import resolve_precision
from spino_core.errors import SpinoError
from spino_core.pseudo.guard import claim_output_dir, label_fingerprint

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")


def _fingerprint(pseudo: PseudoLabelConfig) -> dict:
    return label_fingerprint(
        heads_id="sha256:0", pseudo=pseudo, backbone=BACKBONE, input_hw=(56, 112)
    )


def test_every_setting_but_the_run_only_ones_is_recorded() -> None:
    recorded = _fingerprint(PseudoLabelConfig())["pseudo_label"]
    fields = {f.name: f.metadata.get("affects") for f in dataclasses.fields(PseudoLabelConfig)}
    assert set(recorded) == {k for k, affects in fields.items() if affects != "run"}
    assert {"n_shards", "device", "batch_images", "writer_threads"} <= set(fields) - set(recorded)
    assert {"blob_connectivity", "min_size_reference", "precision"} <= set(recorded)


def test_a_setting_added_later_is_recorded_without_touching_the_guard() -> None:
    """A new fusion option is part of the fingerprint by default: no list to forget."""

    @dataclasses.dataclass(frozen=True)
    class WithNewOption(PseudoLabelConfig):
        merge_small_stuff: bool = False
        new_thread_pool: int = dataclasses.field(default=2, metadata=RUN_ONLY)

    recorded = _fingerprint(WithNewOption())["pseudo_label"]
    assert "merge_small_stuff" in recorded and "new_thread_pool" not in recorded


def test_precision_is_recorded_resolved_and_guards_a_resume(tmp_path) -> None:
    """A folder begun in bf16 on a GPU, unfinished, is not resumed in fp32 on a CPU."""
    auto = PseudoLabelConfig(precision="auto")
    on = {d: dataclasses.replace(auto, precision=resolve_precision("auto", torch.device(d)))
          for d in ("cuda", "cpu")}  # fmt: skip
    assert on["cuda"].precision == "bf16" and on["cpu"].precision == "fp32"
    out = tmp_path / "pseudo"
    claim_output_dir(out, _fingerprint(on["cuda"]))
    (out / "panoptic").mkdir()
    (out / "panoptic" / "a.png").write_bytes(b"label")
    with pytest.raises(SpinoError, match=r"another configuration \(pseudo_label.precision"):
        claim_output_dir(out, _fingerprint(on["cpu"]))


def test_fp32_means_fp32_in_the_backbone_on_cuda_too() -> None:
    from spino_core.models.backbone import create_backbone

    backbone = create_backbone(BACKBONE)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert backbone.uses_bf16(cuda) and not backbone.uses_bf16(cpu)  # heads / student: auto
    backbone.precision = "fp32"
    assert not backbone.uses_bf16(cuda)
    backbone.precision = "bf16"
    assert backbone.uses_bf16(cuda) and not backbone.uses_bf16(cpu)


def test_the_students_resume_check_leaves_out_only_the_run_and_postprocessing() -> None:
    kept = recorded_settings(StudentConfig(), leave_out=("run", "postprocess"))
    assert {"lr", "steps", "seed", "adapter", "crop_scale"} <= set(kept)
    left_out = {f.name for f in dataclasses.fields(StudentConfig)} - set(kept)
    assert left_out == {
        "device",
        "checkpoint_every",
        "exclude",  # its stems reach the fingerprint as the pseudo set's stems
        "center_threshold",
        "nms_kernel",
        "top_k",
        "stuff_area",
        "postprocess_at",
    }
