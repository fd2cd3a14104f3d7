from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation pipeline"

    def ready(self) -> None:
        from accounts.signals import organization_reinstated

        organization_reinstated.connect(_resume_steps, dispatch_uid="generation.resume_steps")


def _resume_steps(sender, organization_id: int, **kwargs) -> None:
    from generation.pipeline import steps_resume

    steps_resume(organization_id=organization_id)
