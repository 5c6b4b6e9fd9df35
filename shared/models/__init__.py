"""All tables of BIApp Reports; importing this package registers every model."""

from shared.models.alerts import Alert, AlertDelivery, AlertEvent
from shared.models.base import Base
from shared.models.catalog import Dashboard, DashboardWidget, DataSource, SavedQuery, SemanticEntity
from shared.models.destinations import Destination
from shared.models.email import EmailConfig
from shared.models.reports import (
    Artifact,
    ArtifactChunk,
    Delivery,
    ReportExecution,
    ScheduledReport,
    Unsubscription,
)
from shared.models.users import PreviewSlot, RateLimitCounter, RevokedToken, User

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertEvent",
    "Artifact",
    "ArtifactChunk",
    "Base",
    "Dashboard",
    "DashboardWidget",
    "DataSource",
    "Delivery",
    "Destination",
    "EmailConfig",
    "PreviewSlot",
    "RateLimitCounter",
    "ReportExecution",
    "RevokedToken",
    "SavedQuery",
    "ScheduledReport",
    "SemanticEntity",
    "Unsubscription",
    "User",
]
