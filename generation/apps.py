from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation pipeline"

    def ready(self) -> None:
        from accounts.signals import organization_reinstated
        from config.metrics import database_gauges_register
        from generation import metrics
        from generation.webhooks import content_registered_webhooks
        from rights.signals import content_registered

        organization_reinstated.connect(_resume_steps, dispatch_uid="generation.resume_steps")
        content_registered.connect(content_registered_webhooks, dispatch_uid="generation.content_registered_webhooks")
        database_gauges_register(metrics.pipeline_gauges, describe=metrics.DESCRIBE)


def _resume_steps(sender, organization_id: int, **kwargs) -> None:
    from generation.pipeline.steps import steps_resume

    steps_resume(organization_id=organization_id)
