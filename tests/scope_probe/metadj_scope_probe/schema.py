"""The probe's configuration: what Scope's schemas endpoint shows for ``metadj-probe``.

Shaped like longlive's (``src/scope/core/pipelines/longlive/schema.py``): text mode by default and video mode too,
load-time height/width/seed/cache/denoising, and the video-only ``noise_scale``/``noise_controller`` as runtime
keys. So the bridge and Scope's own features (modulations, quantised changes) treat it as they treat a Wan
pipeline, but it needs no weights and no GPU (no ``estimated_vram_gb``: Scope registers it on a CPU-only server).
"""

from pydantic import Field
from scope.core.pipelines.base_schema import BasePipelineConfig, ModeDefaults, ui_field_config

from .record import CHUNK_FRAMES, DEFAULT_STEPS


class ProbeConfig(BasePipelineConfig):
    """Configuration of the metadj-probe pipeline."""

    pipeline_id = "metadj-probe"
    pipeline_name = "metadj probe"
    pipeline_description = (
        "CPU-only test pipeline from metadj-bridge: records the parameters each chunk receives to a JSON-lines "
        f"file and stamps every frame with its chunk index and a digest of those parameters ({CHUNK_FRAMES}-frame "
        "chunks at about 20 fps)."
    )
    pipeline_version = "0.1.0"
    supports_prompts = True
    supports_cache_management = True
    min_dimension = 32

    inputs = ["video"]
    outputs = ["video"]

    modes = {
        "text": ModeDefaults(default=True),
        "video": ModeDefaults(noise_scale=0.7, noise_controller=True, denoising_steps=[1000, 750],
                              input_size=CHUNK_FRAMES),
    }

    height: int = Field(
        default=192, ge=32, description="Output height in pixels (at least 32: the stamp is 32 pixels high)",
        json_schema_extra=ui_field_config(order=1, component="resolution", is_load_param=True),
    )
    width: int = Field(
        default=320, ge=128, description="Output width in pixels (at least 128: the stamp is 128 pixels wide)",
        json_schema_extra=ui_field_config(order=1, component="resolution", is_load_param=True),
    )
    base_seed: int = Field(
        default=42, ge=0, description="Base random seed (recorded, not used for anything else)",
        json_schema_extra=ui_field_config(order=2, is_load_param=True, label="Seed"),
    )
    manage_cache: bool = Field(
        default=True, description="Recorded like any parameter; the probe has no cache to manage",
        json_schema_extra=ui_field_config(order=3, component="cache", is_load_param=True),
    )
    denoising_steps: list[int] = Field(
        default=list(DEFAULT_STEPS), description="Denoising step schedule a Wan pipeline would use when none is sent",
        json_schema_extra=ui_field_config(order=4, component="denoising_steps", is_load_param=True,
                                          modulatable=True, modulatable_min=100, modulatable_max=1000),
    )
    noise_scale: float = Field(
        default=0.7, ge=0.0, le=1.0, description="Noise amount (video mode only, as in a Wan pipeline)",
        json_schema_extra=ui_field_config(order=5, component="noise", modes=["video"], is_load_param=False,
                                          modulatable=True, modulatable_min=0.0, modulatable_max=1.0),
    )
    noise_controller: bool = Field(
        default=True, description="Motion-driven noise control (video mode only, as in a Wan pipeline)",
        json_schema_extra=ui_field_config(order=5, component="noise", modes=["video"], is_load_param=False),
    )
