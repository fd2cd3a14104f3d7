"""One declaration per stage (generation/pipeline/specs.py): complete, consistent, and what the pipeline reads."""
from generation.models import JobStatus, Stage, Step
from generation.pipeline import steps as pipeline
from generation.pipeline.specs import EVERY_SHOT, ONE, SAME_SHOT, SPEC, STAGE_SPECS


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
    clip = steps[(Stage.CLIP, 2)]
    assert pipeline.dependencies(clip, steps) == [steps[(Stage.STYLE, 0)], steps[(Stage.STORYBOARD, 0)],
                                                  steps[(Stage.FRAME, 2)]]
    compose = steps[(Stage.COMPOSE, 0)]
    assert pipeline.dependencies(compose, steps) == [steps[(Stage.STORYBOARD, 0)], steps[(Stage.CLIP, 1)],
                                                     steps[(Stage.CLIP, 2)]]
    assert pipeline.dependencies(steps[(Stage.STYLE, 0)], steps) == []
    assert pipeline.step_queue(None, steps[(Stage.REGISTER, 0)]) == "chain"
