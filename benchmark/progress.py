"""Whose progress bar is it: the job's label in front of every inner bar of a grid run.

A method's bars say what they count (``SASRec epoch 26/200``); during a grid run
:func:`job_label` puts the job in front (``ra_rec ml-100k loo seed0 - SASRec epoch 26/200``), so a
long run's screen says which of many jobs is working. It wraps the description of every tqdm
bar created inside the context (the bars of the libraries the methods call included) and
restores tqdm on exit. The grid's own bar (``leave=True``, created outside) is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def job_label(label: str) -> Iterator[None]:
    from tqdm import std

    original = std.tqdm.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        desc = kwargs.get("desc")
        if desc is None and len(args) > 1:  # tqdm(iterable, desc, ...)
            args = (args[0], f"{label} - {args[1]}", *args[2:])
        else:
            kwargs["desc"] = f"{label} - {desc}" if desc else label
        original(self, *args, **kwargs)

    std.tqdm.__init__ = init
    try:
        yield
    finally:
        std.tqdm.__init__ = original
