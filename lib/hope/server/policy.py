"""Which role each route needs: one table for MONAI Label's routes and HOPE's alike.

The access guard (:mod:`hope.server.access`) looks every request up here. A request that matches several rules
needs the strictest of them. A route the server serves without a rule stops start-up
(:func:`unruled_routes`), so a new route cannot forget its rule.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.routing import compile_path

from hope.auth.identity import Role


class Open(enum.Enum):
    """Routes that need no token."""

    PUBLIC = "public"  # sign-in itself, and what a client asks before signing in
    SIGNED_EVENT = "signed event"  # the Orthanc plugin's events: HMAC-signed with the event key instead


Rule = Role | Open


@dataclass(frozen=True)
class RouteRule:
    """The rule of one route: its methods, its path template (as the router has it) and what it needs."""

    methods: frozenset[str]
    path: str
    needs: Rule

    @property
    def pattern(self) -> re.Pattern[str]:
        """The path template as a regular expression (Starlette's own compilation)."""
        return compile_path(self.path)[0]


def _rules(needs: Rule, *routes: str) -> list[RouteRule]:
    found = []
    for route in routes:
        methods, path = route.split(" ", 1)
        found.append(RouteRule(frozenset(methods.split("|")), path, needs))
    return found


USER, ANNOTATOR, REVIEWER, ADMIN = Role.USER, Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN

#: Every route HOPE serves and what it needs (HEAD goes with GET).
RULES: tuple[RouteRule, ...] = tuple(
    _rules(Open.PUBLIC, "GET /auth/", "POST /auth/token", "GET /auth/login", "GET /auth/callback",
           "POST /auth/logout", "GET /favicon.ico")
    + _rules(Open.SIGNED_EVENT, "POST /hope/events")
    + _rules(USER,
             "GET /", "GET /docs", "GET /docs/oauth2-redirect", "GET /redoc", "GET /openapi.json",
             "GET /auth/token/valid", "GET /info/", "GET /model/info/{model}",
             "GET /datastore/", "GET /datastore/image", "GET /datastore/image/info", "GET /datastore/label",
             "GET /train/", "GET /scoring/",
             "GET /hope/state", "GET /hope/models/{task}/versions", "GET /hope/models/{task}/plot.png",
             "GET /hope/review/series/{series_uid}",
             "GET /cases", "GET /cases/vocabulary", "GET /cases/{study_uid}",
             "GET /proxy/dicom/qido/{path:path}", "GET /proxy/dicom/wado/{path:path}",
             "GET /ohif/app-config.js", "GET /ohif/{path:path}",
             "GET /console/", "GET /console/{name}", "GET /hope/console/overview", "GET /hope/console/series",
             "GET /hope/console/team", "GET /hope/console/activelearning", "GET /hope/console/store",
             "GET /hope/console/cases", "GET /hope/measurements/{series_uid}")
    + _rules(ANNOTATOR, "POST /infer/{model}", "POST /activelearning/{strategy}", "PUT /datastore/label")
    + _rules(REVIEWER, "GET /hope/review/queue", "POST /hope/review/{seg_sop_uid}", "PUT /cases/{study_uid}",
             "GET /cases/audit", "GET /cases/{study_uid}/audit")
    + _rules(ADMIN,
             "POST /train/{model}", "DELETE /train/", "POST /scoring/{method}", "DELETE /scoring/",
             "PUT /hope/retrain", "PUT /hope/models/{task}/pin", "DELETE /hope/models/{task}/pin",
             "POST /cases/import", "DELETE /cases/{study_uid}", "DELETE /datastore/label",
             "DELETE /datastore/image", "GET /hope/audit", "GET /auth/routes",
             "POST /hope/console/outbox/{event_id}/retry")
)


def _methods(method: str) -> set[str]:
    return {"GET", "HEAD"} if method in {"GET", "HEAD"} else {method}


def needed(method: str, path: str, rules: Iterable[RouteRule] = RULES) -> Rule | None:
    """What a request needs: the strictest rule matching it, or ``None`` when no rule matches.

    A public rule only holds when no role rule matches too; a role rule beats a signed event's.
    """
    wanted = _methods(method)
    matching = [rule.needs for rule in rules if rule.methods & wanted and rule.pattern.match(path)]
    roles = [need for need in matching if isinstance(need, Role)]
    if roles:
        return max(roles)
    return Open.SIGNED_EVENT if Open.SIGNED_EVENT in matching else (Open.PUBLIC if matching else None)


def unruled_routes(served: Iterable[tuple[str, str]], rules: Iterable[RouteRule] = RULES) -> list[str]:
    """The served ``(method, path template)`` pairs no rule names exactly."""
    named = {(method, rule.path) for rule in rules for method in rule.methods}
    return sorted(f"{method} {path}" for method, path in served
                  if ("GET" if method == "HEAD" else method, path) not in named)
