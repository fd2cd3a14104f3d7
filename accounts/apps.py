from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and tenants"

    def ready(self) -> None:
        from accounts import checks, live_sessions, signals  # noqa: F401  (registers checks and receivers)
