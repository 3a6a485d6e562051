"""Five-field cron expressions, enough to ask "has a tick passed since then?".

Orchestrators run the schedule themselves (an integration compiles the policy's
``cron`` into an Airflow timetable, a Dagster schedule, a Metaflow ``@schedule``);
flowrecord only needs to evaluate it locally, for ``flowrecord retrain check``.
Standard syntax: ``*``, lists, ranges, steps, month and weekday names, and the
``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly`` macros. When both
day-of-month and day-of-week are restricted a day matching either fires, as in
Vixie cron. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronSchedule", "expand_macro"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand_macro(expression: str) -> str:
    """The five fields a macro (``@daily``, ``@weekly``...) stands for; other text as given."""
    text = expression.strip()
    return _MACROS.get(text.lower(), text)


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# Searching back this far finds a tick of any valid expression (Feb 29 included).
_MAX_DAYS_BACK = 366 * 8 + 2


def _field(text: str, lo: int, hi: int, names: dict[str, int], what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"empty list item in the {what} field {text!r}")
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r} in the {what} field")
            step = int(step_text)
        if body == "*":
            start, end = lo, hi
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, names, what), _value(b, names, what)
        else:
            start = _value(body, names, what)
            end = hi if step_text else start
        if not (lo <= start <= hi and lo <= end <= hi) or start > end:
            raise ValueError(f"{part!r} is out of range {lo}-{hi} in the {what} field")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int], what: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number or name in the {what} field")
    return int(text)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression.

    >>> s = CronSchedule("30 2 * * mon-fri")
    >>> s.previous(datetime(2026, 3, 9, 1, 0, tzinfo=UTC)).isoformat()
    '2026-03-06T02:30:00+00:00'
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression must be a str, not {type(expression).__name__}")
        text = expand_macro(expression)
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron expression {expression!r} must have 5 fields "
                "(minute hour day-of-month month day-of-week) or be a macro like @daily"
            )
        set_ = object.__setattr__
        set_(self, "expression", expression)
        set_(self, "minutes", _field(parts[0], 0, 59, {}, "minute"))
        set_(self, "hours", _field(parts[1], 0, 23, {}, "hour"))
        set_(self, "days", _field(parts[2], 1, 31, {}, "day-of-month"))
        set_(self, "months", _field(parts[3], 1, 12, _MONTHS, "month"))
        weekdays = _field(parts[4], 0, 7, _DAYS, "day-of-week")
        set_(self, "weekdays", frozenset(d % 7 for d in weekdays))  # 7 is Sunday too
        set_(self, "day_restricted", not parts[2].startswith("*"))
        set_(self, "weekday_restricted", not parts[4].startswith("*"))

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def previous(self, at: datetime) -> datetime | None:
        """The latest tick at or before *at* (UTC), or None when there is none in 8 years."""
        at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
        at = at.replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        hours = sorted(self.hours, reverse=True)
        minutes = sorted(self.minutes, reverse=True)
        for back in range(_MAX_DAYS_BACK):
            if back:
                day -= timedelta(days=1)
            if not self._day_matches(day):
                continue
            for hour in hours:
                if back == 0 and hour > at.hour:
                    continue
                for minute in minutes:
                    if back == 0 and hour == at.hour and minute > at.minute:
                        continue
                    return day.replace(hour=hour, minute=minute)
        return None
