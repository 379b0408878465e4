"""Scheduled automation: workflows of the orchestrator run on cron schedules, once per due
time across replicas (a compare-and-set on the schedule's last-run record in Redis), with a
missed-run policy, a run history and failures as Kubernetes Events."""

from services.analytics.schedules.models import Schedule, ScheduleRun, ScheduleSpec, redact
from services.analytics.schedules.scheduler import Result, Scheduler
from services.analytics.schedules.settings import ScheduleSettings
from services.analytics.schedules.store import ScheduleStore
from services.analytics.schedules.wiring import build_scheduler

__all__ = [
    "Result",
    "Schedule",
    "ScheduleRun",
    "ScheduleSettings",
    "ScheduleSpec",
    "ScheduleStore",
    "Scheduler",
    "build_scheduler",
    "redact",
]
