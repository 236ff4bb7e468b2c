"""The task registry: every entry point in group ``tinyllm.tasks``, built-in tasks included.

A plugin that fails to import is skipped, with a warning recorded on its entry (the CLI shows it
once); the rest keeps working. Only entry points are loaded (never files from arbitrary paths).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import distributions

from tinyllm.errors import UserError
from tinyllm.tasks.base import Task

GROUP = "tinyllm.tasks"


class UnknownTask(UserError):
    """No installed package provides a task by that name."""


@dataclass
class TaskEntry:
    name: str                 # entry point name (= the task name)
    value: str                # "module:attr" the entry point names
    package: str              # distribution that declared it, e.g. "tinyllm" or "tinyllm-hvac"
    version: str              # that distribution's version
    task: Task | None = None  # the loaded task, or None when loading failed
    error: str | None = None  # why loading failed
    warnings: list[str] = field(default_factory=list)  # for people: a failed load, a duplicate name


_ENTRIES: dict[str, TaskEntry] | None = None


def warnings() -> list[str]:
    """Every warning of the loaded entries, in name order (the CLI prints them once)."""
    return [w for e in entries().values() for w in e.warnings]


def _load(ep) -> TaskEntry:
    dist = getattr(ep, "dist", None)
    entry = TaskEntry(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?")
    try:
        obj = ep.load()
        task = obj() if isinstance(obj, type) else obj
        if not isinstance(task, Task):
            raise TypeError(f"{ep.value} is not a tinyllm.tasks.Task")
        if task.name != ep.name:
            task.name = ep.name  # the entry point's name is the one users type
        entry.task = task
    except Exception as e:  # a broken plugin must not take the tool down
        entry.error = f"{type(e).__name__}: {e}"
        entry.warnings.append(f"task plugin {ep.name!r} from {entry.package} failed to load "
                              f"({entry.error}); other tasks still work")
    return entry


def _group_entry_points() -> list:
    """Entry points of the group from every distribution on sys.path, sorted by name.

    ``importlib.metadata.entry_points()`` keeps only the first distribution of each name, so stale
    metadata of a package (an old ``*.egg-info`` in the working directory) would hide the installed
    one's tasks; reading every distribution avoids that.
    """
    eps = [ep for dist in distributions() for ep in dist.entry_points if ep.group == GROUP]
    return sorted(eps, key=lambda e: e.name)


def entries(reload: bool = False) -> dict[str, TaskEntry]:
    """Every declared task, loaded once per process (failures included, with their error)."""
    global _ENTRIES
    if _ENTRIES is None or reload:
        found: dict[str, TaskEntry] = {}
        for ep in _group_entry_points():
            if ep.name in found:
                first = found[ep.name]
                if first.value != ep.value:
                    other = getattr(ep, "dist", None)
                    first.warnings.append(f"task {ep.name!r} is declared by both {first.package} "
                                          f"and {other.name if other else '?'}; using the first")
                continue
            found[ep.name] = _load(ep)
        _ENTRIES = found
    return _ENTRIES


def tasks() -> dict[str, Task]:
    """The tasks that loaded, by name."""
    return {n: e.task for n, e in entries().items() if e.task is not None}


def get(name: str) -> Task:
    """The task called ``name``; :class:`UnknownTask` (exit 2) names the installed ones."""
    entry = entries().get(name)
    if entry is None:
        known = ", ".join(tasks()) or "none"
        raise UnknownTask(f"unknown task {name!r}; installed tasks: {known}")
    if entry.task is None:
        raise UnknownTask(f"task {name!r} from {entry.package} failed to load: {entry.error}")
    return entry.task


def register(task: Task, package: str = "(runtime)") -> None:
    """Add a task in this process without an entry point (for tests and notebooks)."""
    entries()[task.name] = TaskEntry(task.name, type(task).__qualname__, package, "", task=task)
