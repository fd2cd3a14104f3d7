"""One declaration per stage (generation/pipeline/specs.py): complete, consistent, and what the pipeline reads."""
from generation.models import Job, JobStatus, Stage, Step
from generation.pipeline import steps as pipeline
from generation.pipeline.specs import EVERY_SHOT, FIRST_SHOT, ONE, SAME_SHOT, SPEC, STAGE_SPECS


def test_every_stage_is_declared_once_in_pipeline_order():
    assert [spec.stage for spec in STAGE_SPECS] == list(Stage.values)
    assert len(SPEC) == len(Stage.values)


def test_each_declaration_is_consistent():
    seen = set()
    for spec in STAGE_SPECS:
        assert callable(spec.run) and spec.run.__name__ == spec.runner.rsplit(".", 1)[1]
        assert (spec.kind is None) != (spec.queue is None), spec.stage  # a provider's queue, or the platform's
        assert spec.weight > 0 and spec.job_status in JobStatus.values and str(spec.label)
        assert bool(spec.verb) != spec.per_shot, spec.stage  # per-shot stages count their shots instead
        for stage, which in spec.needs:
            assert stage in seen, f"{spec.stage} needs {stage}, which comes later"  # the graph runs forward
            assert which in (ONE, SAME_SHOT, EVERY_SHOT)
            assert (which == SAME_SHOT) <= (SPEC[stage].per_shot and spec.per_shot)
            assert (which == ONE) == (not SPEC[stage].per_shot)
        seen.add(spec.stage)


def test_the_pipeline_reads_the_declarations():
    steps = {}
    for position, spec in enumerate(STAGE_SPECS):
        for shot in ((1, 2) if spec.per_shot else (0,)):
            steps[(spec.stage, shot)] = Step(stage=spec.stage, shot=shot, position=position)
    job = Job(organization_id=1, topic="t", options={}, template_snapshot={})
    clip = steps[(Stage.CLIP, 2)]
    assert pipeline.dependencies(clip, steps, job) == [steps[(Stage.STYLE, 0)], steps[(Stage.STORYBOARD, 0)],
                                                  steps[(Stage.FRAME, 2)]]
    compose = steps[(Stage.COMPOSE, 0)]
    assert pipeline.dependencies(compose, steps, job) == [steps[(Stage.STORYBOARD, 0)], steps[(Stage.CLIP, 1)],
                                                     steps[(Stage.CLIP, 2)]]
    assert pipeline.dependencies(steps[(Stage.STYLE, 0)], steps, job) == []
    assert pipeline.step_queue(None, steps[(Stage.REGISTER, 0)]) == "chain"


def test_later_clips_wait_for_the_first_only_when_the_job_keeps_a_recurring_character():
    from generation.models import Artifact, Job

    steps = {}
    for position, spec in enumerate(STAGE_SPECS):
        for shot in ((1, 2, 3) if spec.per_shot else (0,)):
            steps[(spec.stage, shot)] = Step(stage=spec.stage, shot=shot, position=position)
    base = [steps[(Stage.STYLE, 0)], steps[(Stage.STORYBOARD, 0)]]

    def job(video: list[str], recurring: bool) -> Job:
        return Job(organization_id=1, topic="t", options={"resolution": "480p", "aspect_ratio": "16:9"},
                   template_snapshot={"settings": {"recurring_character": recurring, "providers": {"video": video}}})

    keeps = job(["openai"], True)
    assert pipeline.dependencies(steps[(Stage.CLIP, 3)], steps, keeps) == [*base, steps[(Stage.FRAME, 3)],
                                                                           steps[(Stage.CLIP, 1)]]
    assert pipeline.dependencies(steps[(Stage.CLIP, 1)], steps, keeps) == [*base, steps[(Stage.FRAME, 1)]]
    # Not asked for, or a video provider that makes no characters: the shots stay independent.
    for other in (job(["openai"], False), job(["offline"], True), job(["diffusers", "openai"], True)):
        assert pipeline.dependencies(steps[(Stage.CLIP, 3)], steps, other) == [*base, steps[(Stage.FRAME, 3)]]
    assert pipeline.dependencies(steps[(Stage.FRAME, 3)], steps, keeps) == base
    # And only then do the clips' digests hold it.
    storyboard = Artifact(data={"shots": [{"number": n, "description": f"Shot {n}"} for n in (1, 2, 3)]})
    inputs = {(Stage.STORYBOARD, 0): storyboard}
    assert pipeline.step_params(keeps, steps[(Stage.CLIP, 1)], inputs)["recurring_character"] is True
    assert "recurring_character" not in pipeline.step_params(job(["openai"], False), steps[(Stage.CLIP, 1)], inputs)
    assert "recurring_character" not in pipeline.step_params(job(["offline"], True), steps[(Stage.CLIP, 1)], inputs)


def test_a_conditional_input_is_declared_like_the_others():
    for spec in STAGE_SPECS:
        for stage, which in spec.character_needs:
            assert which == FIRST_SHOT and spec.per_shot and SPEC[stage].per_shot
