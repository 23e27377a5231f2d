"""The operator's HTML pages at `/admin`: sign-in, dashboard, users, keys, usage, audit."""

from .views import admin_blueprint

__all__ = ["admin_blueprint"]
