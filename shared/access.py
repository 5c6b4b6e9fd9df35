"""May this run still read what it reads? Checked at every run, not only when it was saved.

A report or alert keeps its owner's rights at the moment it runs: a query that was unshared,
a dashboard made private, an entity withdrawn, an owner deactivated or demoted — the run
fails with a reason and sends nothing. The rules are the API's (`visible_to`): admins see
everything; others see what they own and what is shared.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.errors import PermanentError
from shared.models import Dashboard, DataSource, SavedQuery, SemanticEntity, User

SQL_ROLES = ("admin", "analyst")


class RunNotAllowedError(PermanentError):
    """The owner may no longer read what the run would read; nothing is sent."""

    code = "run_not_allowed"


def can_read(user: User, owner_id: uuid.UUID | None, shared: bool = False) -> bool:
    return user.role == "admin" or owner_id == user.id or shared


def _owner(session: Session, owner_id: uuid.UUID | None) -> User:
    user = session.get(User, owner_id) if owner_id else None
    if user is None or not user.is_active:
        raise RunNotAllowedError("The owner of this report is no longer an active user, so it cannot run.")
    return user


def check_query(session: Session, user: User, query: SavedQuery, *, via: str = "saved query") -> None:
    """RunNotAllowedError unless `user` may run `query` now (its entity or data source included)."""
    if not can_read(user, query.owner_id, query.shared):
        raise RunNotAllowedError(
            f"The {via} {query.name!r} is no longer shared with the report's owner, so nothing was run or sent."
        )
    definer = session.get(User, query.owner_id)
    if query.kind == "sql":
        if definer is None or definer.role not in SQL_ROLES or not definer.is_active:
            raise RunNotAllowedError(
                f"The raw SQL of {query.name!r} belongs to someone who may no longer write SQL, so it was not run."
            )
        if session.get(DataSource, query.data_source_id) is None:
            raise RunNotAllowedError(f"The data source of {query.name!r} no longer exists.")
        return
    entity = session.get(SemanticEntity, query.entity_id) if query.entity_id else None
    if entity is None or definer is None or not can_read(definer, entity.owner_id, entity.shared):
        raise RunNotAllowedError(
            f"The semantic entity behind {query.name!r} is no longer available to its author, so it was not run."
        )


def check_report_sources(
    session: Session, owner_id: uuid.UUID, *, query: SavedQuery | None = None, dashboard: Dashboard | None = None
) -> None:
    """Check the owner, the dashboard and every query the run would read."""
    user = _owner(session, owner_id)
    if dashboard is not None:
        if not can_read(user, dashboard.owner_id, dashboard.shared):
            raise RunNotAllowedError(
                f"The dashboard {dashboard.name!r} is no longer shared with the report's owner, so nothing was sent."
            )
        for widget in dashboard.widgets:
            widget_query = session.get(SavedQuery, widget.saved_query_id)
            if widget_query is not None:
                check_query(session, user, widget_query, via=f"query of widget {widget.title!r},")
    if query is not None:
        check_query(session, user, query)
