"""The admin console: a small server-rendered web console on its own listener
([server] admin_listen), for the logins in [auth] admins only."""

from gateway.admin.app import admin_runner, create_admin_app

__all__ = ["admin_runner", "create_admin_app"]
