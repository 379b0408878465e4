"""The skeleton every kind's controller is built on (Knative's generated reconciler frame).

A kind is a folder with `handlers.py` (kopf registration only), `reconciler.py` (observe,
decide, act -> one `Result`), `resources.py` (pure builders) and `status.py`; everything else
lives here once: the operator context (`context`), the converge path (`controller`), serialized
per object (`queue`), the resync scheduler (`scheduler`), the status writer (`status`), Events
(`events`), the retry policy (`retry`) and the error split (`errors`).
"""

from controllers.core.context import OperatorContext, context_of, register
from controllers.core.controller import (
    ChildEvent,
    Controller,
    Kind,
    KindReconciler,
    Requeue,
    Result,
)
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.events import Event, EventRecorder
from controllers.core.queue import ObjectQueue
from controllers.core.retry import RetryPolicy
from controllers.core.scheduler import ObjectKey, ResyncScheduler
from controllers.core.status import StatusWriter

__all__ = [
    "ChildEvent",
    "Controller",
    "Event",
    "EventRecorder",
    "Kind",
    "KindReconciler",
    "ObjectKey",
    "ObjectQueue",
    "OperatorContext",
    "ProviderError",
    "Requeue",
    "Result",
    "ResyncScheduler",
    "RetryPolicy",
    "StalledError",
    "StatusWriter",
    "TransientError",
    "context_of",
    "register",
]
