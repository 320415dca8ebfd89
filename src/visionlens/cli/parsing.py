"""Option values that are small languages: unit and channel lists (`7`, `3,5,9`, `0-7`), comma
lists, and class targets. Errors name the Python parameter in backticks, which the app writes
as the command's flag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ArgumentError

if TYPE_CHECKING:
    import torch

    from ..models import Model


def comma_list(text: str) -> list[str]:
    """`a, b,,c` -> ['a', 'b', 'c']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str, name: str) -> list[int]:
    """Integers written as `7`, `3,5,9`, `0-7` or a mix (`0-3,9`); `name` is the parameter the
    text came from, for the error message."""
    values: list[int] = []
    try:
        for part in comma_list(text):
            if "-" in part[1:]:  # a range; a leading '-' is a sign
                first, last = part.split("-", 1)
                values += range(int(first), int(last) + 1)
            else:
                values.append(int(part))
    except ValueError:
        raise ArgumentError(f"`{name}` must be integers like 7, 3,5,9 or 0-7; got {text!r}") from None
    if not values:
        raise ArgumentError(f"`{name}` is empty; give integers like 7, 3,5,9 or 0-7")
    return values


def target_class(model: Model, x: torch.Tensor, target: str | None) -> int:
    """The class to explain: `target` (an index or a class name), or the model's top-1 class
    for the first image of `x`."""
    if target is not None:
        return model.class_index(target)
    return int(model.logits(x[:1]).argmax(-1)[0])
