from django.apps import AppConfig


class RightsConfig(AppConfig):
    name = "rights"
    verbose_name = "Rights and verification"

    def ready(self) -> None:
        from config.health import health_check_register
        from config.metrics import database_gauges_register
        from rights import health, metrics

        database_gauges_register(metrics.registry_gauges, describe=metrics.DESCRIBE)
        health_check_register("chain", health.chain_health, required=health.chain_required)
