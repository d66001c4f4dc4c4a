"""Classes for the restricted unpickler's module-prefix tests (``tests.restricted_models``).

``Parameters`` is a pydantic model shaped like LUTE's parameter models (``TaskParameters``
subclasses such as ``lute.io.models.tests.TestSocketParameters``: fields with defaults, a
nested model, an enum); it pickles the same way (NEWOBJ, then BUILD with a state dict).
"""

from __future__ import annotations

import enum
from typing import Any, Dict, List, Optional

BaseModel: Any
try:
    from pydantic import BaseModel
except ImportError:  # the tests that need the model skip
    BaseModel = None


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


Inner: Any = None
Parameters: Any = None
if BaseModel is not None:
    class Inner(BaseModel):  # type: ignore[no-redef]
        name: str = "inner"
        values: List[int] = []

    class Parameters(BaseModel):  # type: ignore[no-redef]
        array_size: int = 10000
        num_arrays: int = 10
        mode: Mode = Mode.SAFE
        inner: Inner = Inner()
        extra: Optional[Dict[str, float]] = None


def not_a_class() -> str:
    """A function under the allowed prefix: never resolved by the prefix rule."""
    return "called"


class Plain:
    """A plain class with an instance dict."""

    def __init__(self) -> None:
        self.value = 1


class Registry:
    """Class-level state a hostile payload would like to change."""

    setting = "original"


class WritesItsClass:
    """A class whose own ``__setstate__`` writes to a class (as LUTE's ``TaskParameters`` does)."""

    def __setstate__(self, state: Dict[str, Any]) -> None:
        for key, value in state.pop("_class_attrs", {}).items():
            setattr(Registry, key, value)
        self.__dict__.update(state)


class CustomNew:
    """A class whose own ``__new__`` would run class code."""

    made = 0

    def __new__(cls) -> "CustomNew":
        cls.made += 1
        return super().__new__(cls)


class Slotted:
    """A class with declared slots and a property setter."""

    __slots__ = ("value",)

    @property
    def shadow(self) -> int:
        return 0

    @shadow.setter
    def shadow(self, value: int) -> None:
        Registry.setting = "via a property"


ModelWritesItsClass: Any = None
PrivateModel: Any = None
if BaseModel is not None:
    class ModelWritesItsClass(BaseModel):  # type: ignore[no-redef]
        """Shaped like LUTE's ``TaskParameters``: its ``__setstate__`` sets ``Config`` attributes."""

        size: int = 1

        class Config:
            set_result = False

        def __setstate__(self, state: Dict[str, Any]) -> None:
            for key, value in state.pop("_config_attrs", {}).items():
                setattr(self.Config, key, value)
            super().__setstate__(state)
