"""Bench app `django`: a Django view that reads 10 rows with the ORM from SQLite and
renders them with a template (issue 15 goal 3).

Settings are configured in code; the database file is named by $BENCH_SQLITE and is
created and filled (100 rows) by `create_db()`, which the bench calls once before it
starts the servers. Every worker opens its own connection (Django keeps one per thread).

    BENCH_SQLITE=/tmp/x/bench.sqlite3 reclusterd fw_django:application   # cwd loadtests/
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

ROWS = 100
SHOWN = 10
TEMPLATE = """<!doctype html><title>items</title><ul>
{% for item in items %}<li id="i{{ item.id }}">{{ item.name }}: {{ item.price }}</li>
{% endfor %}</ul>"""

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="bench-only-not-secret",
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[__name__],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],  # Content-Length
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": os.environ.get("BENCH_SQLITE", ":memory:")}},
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    # cached, as Django's default loaders are when DEBUG is off
                    "OPTIONS": {"loaders": [("django.template.loaders.cached.Loader", [
                        ("django.template.loaders.locmem.Loader", {"items.html": TEMPLATE})])]}}],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

# the model is declared after setup: this module is its own (single-module) Django app
from django.db import models  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402


class Item(models.Model):
    name = models.CharField(max_length=40)
    price = models.IntegerField()

    class Meta:
        app_label = __name__


def items(request: HttpRequest) -> HttpResponse:
    """GET /django: the first SHOWN rows by id, rendered."""
    return render(request, "items.html", {"items": list(Item.objects.order_by("id")[:SHOWN])})


urlpatterns = [path("django", items), path("hello", lambda r: HttpResponse(b"Hello world!"))]


def create_db() -> None:
    """Create the table in $BENCH_SQLITE and insert ROWS rows (the bench calls this once)."""
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.bulk_create(Item(name=f"item {i}", price=i * 7 % 100) for i in range(ROWS))
    connection.close()


def _application() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


application = _application()
