"""What each stage of the pipeline is, declared once: the provider kind that serves it (or the queue of
the platform's own work), its weight in the progress fraction, whether it runs once per shot, the steps
whose outputs it consumes, the job status shown while it is the furthest one running, its runner, and
the words the portal and the progress message use. The pipeline (graph, queues, progress), the worker
(runners) and the portal read this table; adding a stage is one entry here and its runner.

Runners are named, not imported (`generation.pipeline.stages.run_<stage>`), so this table sits below the
pipeline and the stages module that both read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy

from generation.models import JobStatus, Stage

# Which step of an input stage a step consumes.
ONE = "one"  # the stage's single step (shot 0)
SAME_SHOT = "same_shot"  # the step of the same shot
EVERY_SHOT = "every_shot"  # every shot's step, in shot order
FIRST_SHOT = "first_shot"  # the first shot's step, for the later shots of a per-shot stage (none for shot 1)


@dataclass(frozen=True)
class StageSpec:
    stage: Stage
    kind: str | None  # the provider kind that serves it; None: the platform's own work
    queue: str | None  # the queue of the platform's own work (a provider's queue comes from the provider)
    weight: int  # in the progress fraction (clips and compose dominate the wall time)
    job_status: JobStatus  # shown while this is the furthest stage running
    needs: tuple[tuple[Stage, str], ...]  # the inputs, in the order their digests are hashed
    runner: str  # dotted path of the function that runs a step of it
    label: str  # the portal's name for it
    verb: str = ""  # the progress message while it runs ("" for per-shot stages, which count shots)
    per_shot: bool = False
    # More inputs when the job keeps a recurring character (steps.recurring_character): only then, so the
    # shots of other jobs still run in parallel and keep their digests.
    character_needs: tuple[tuple[Stage, str], ...] = ()

    @cached_property
    def run(self):
        return import_string(self.runner)


STAGE_SPECS: tuple[StageSpec, ...] = (
    StageSpec(Stage.STYLE, "text", None, 1, JobStatus.STYLE_DETECTION, (), "generation.pipeline.stages.run_style",
              gettext_lazy("Style"), "Detecting the style"),
    StageSpec(Stage.SCRIPT, "text", None, 2, JobStatus.STORY_GENERATION, ((Stage.STYLE, ONE),),
              "generation.pipeline.stages.run_script", gettext_lazy("Script"), "Writing the script"),
    StageSpec(Stage.STORYBOARD, "text", None, 2, JobStatus.STORYBOARD_BREAKDOWN,
              ((Stage.STYLE, ONE), (Stage.SCRIPT, ONE)), "generation.pipeline.stages.run_storyboard",
              gettext_lazy("Storyboard"), "Breaking the script into shots"),
    StageSpec(Stage.FRAME, "image", None, 2, JobStatus.IMAGE_GENERATION, ((Stage.STYLE, ONE), (Stage.STORYBOARD, ONE)),
              "generation.pipeline.stages.run_frame", gettext_lazy("Frame"), per_shot=True),
    StageSpec(Stage.CLIP, "video", None, 5, JobStatus.VIDEO_GENERATION,
              ((Stage.STYLE, ONE), (Stage.STORYBOARD, ONE), (Stage.FRAME, SAME_SHOT)),
              "generation.pipeline.stages.run_clip",
              gettext_lazy("Clip"), per_shot=True,
              # The later clips feature the character made from the first one.
              character_needs=((Stage.CLIP, FIRST_SHOT),)),
    StageSpec(Stage.COMPOSE, None, "cpu", 8, JobStatus.COMPOSING, ((Stage.STORYBOARD, ONE), (Stage.CLIP, EVERY_SHOT)),
              "generation.pipeline.stages.run_compose", gettext_lazy("Compose"), "Composing the video"),
    StageSpec(Stage.REVIEW, None, "cpu", 1, JobStatus.REVIEWING, ((Stage.COMPOSE, ONE),),
              "generation.pipeline.stages.run_review", gettext_lazy("Review"), "Reviewing the video"),
    # Protects the video itself, once the review passed.
    StageSpec(Stage.PROTECT, None, "rights", 2, JobStatus.PROTECTING, ((Stage.COMPOSE, ONE), (Stage.REVIEW, ONE)),
              "generation.pipeline.stages.run_protect", gettext_lazy("Protect"), "Protecting the video"),
    StageSpec(Stage.REGISTER, None, "chain", 1, JobStatus.REGISTERING, ((Stage.PROTECT, ONE),),
              "generation.pipeline.stages.run_register", gettext_lazy("Register"), "Registering ownership"),
)
SPEC: dict[str, StageSpec] = {spec.stage: spec for spec in STAGE_SPECS}


def stage_spec(stage: str) -> StageSpec:
    return SPEC[stage]
