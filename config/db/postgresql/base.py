"""PostgreSQL backend that keeps row level security in step with the tenant scope.

Before each statement it makes sure the connection's `app.organization_id` and `app.unscoped`
settings equal the active scope (config/tenancy.py), so a query that slipped past the ORM's
scoping still sees only the current organization's rows. The settings are re-sent only when the
scope changed, or after a rollback (which undoes them).
"""
from django.db.backends.postgresql import base

SET_SCOPE_SQL = "SELECT set_config('app.organization_id', %s, false), set_config('app.unscoped', %s, false)"


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rls_applied = None
        self.execute_wrappers.append(self._apply_tenant_scope)

    def _apply_tenant_scope(self, execute, sql, params, many, context):
        # Imported here: the backend loads while models are being defined, before accounts can be.
        from config.tenancy import rls_settings

        wanted = rls_settings()
        if wanted != self._rls_applied:
            # On a cursor of the raw connection, not the statement's own: `.iterator()` runs on a
            # server-side cursor, where an execute only declares the statement and never runs it.
            with self.connection.cursor() as cursor:
                cursor.execute(SET_SCOPE_SQL, wanted)
            self._rls_applied = wanted
        return execute(sql, params, many, context)

    def get_new_connection(self, conn_params):
        self._rls_applied = None
        return super().get_new_connection(conn_params)

    def _rollback(self):
        self._rls_applied = None
        return super()._rollback()

    def _savepoint_rollback(self, sid):
        # Sent straight to psycopg, not through the execute wrapper: after an error the transaction
        # is aborted and refuses everything but the rollback, including the wrapper's set_config.
        with self.connection.cursor() as cursor:
            cursor.execute(self.ops.savepoint_rollback_sql(sid))
        self._rls_applied = None  # the rollback may have undone settings made since the savepoint
