"""Imports every domain's tables so ``Base.metadata`` is complete (Alembic, tests)."""

from shipyard.db.base import Base
from shipyard.events import models as events_models
from shipyard.hosting import models as hosting_models
from shipyard.jobs import models as jobs_models
from shipyard.registry import models as registry_models
from shipyard.security import models as security_models
from shipyard.storage import models as storage_models
from shipyard.tracking import models as tracking_models

__all__ = [
    "Base",
    "events_models",
    "hosting_models",
    "jobs_models",
    "registry_models",
    "security_models",
    "storage_models",
    "tracking_models",
]
