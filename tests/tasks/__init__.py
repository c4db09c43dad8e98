"""The public task set lives in the package (``colony/_eval_tasks.py``) so ``colony eval`` can
import it from an installed copy; this module keeps the tests' old import path working."""

from colony._eval_tasks import (
    ARRAY,
    I32,
    SCALAR,
    TASKS,
    Task,
    arrays,
    floats,
    ints,
    task_dict,
    wrap,
)

__all__ = ["ARRAY", "I32", "SCALAR", "TASKS", "Task", "arrays", "floats", "ints", "task_dict",
           "wrap"]
