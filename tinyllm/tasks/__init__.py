"""Fine-tuning tasks: the :class:`Task` interface, the registry (entry points ``tinyllm.tasks``)
and the built-in tasks ``lm``, ``classify`` and ``instruct``."""
from tinyllm.tasks.base import DataError, Task

__all__ = ["DataError", "Task"]
