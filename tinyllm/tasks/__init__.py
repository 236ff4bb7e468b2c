"""Fine-tuning tasks: the :class:`Task` interface and its :class:`Option` values, the registry
(entry points ``tinyllm.tasks``) and the built-in tasks ``lm``, ``classify`` and ``instruct``."""
from tinyllm.tasks.base import DataError, Option, Task, holds_run_lock

__all__ = ["DataError", "Option", "Task", "holds_run_lock"]
