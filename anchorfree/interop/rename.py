"""Renaming the keys of a state dict written by another library, by an ordered list of regular expressions."""
from __future__ import annotations

import re
from typing import Callable, Union

import torch

from ..errors import CheckpointError

# (pattern, replacement): the first rule whose pattern matches a key renames it (re.sub semantics;
# the replacement may be a function of the match)
Rule = tuple[str, Union[str, Callable[[re.Match], str]]]


def rename_keys(state_dict: dict[str, torch.Tensor], rules: list[Rule], what: str,
                unmatched: str = "unexpected key '{key}' in the {what} state dict") -> dict[str, torch.Tensor]:
    """Rename every key by the first matching rule; a key no rule matches raises :class:`CheckpointError` with
    ``unmatched`` (formatted with ``key`` and ``what``)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key, count=1)
            if n:
                out[new] = value
                break
        else:
            raise CheckpointError(unmatched.format(key=key, what=what))
    return out
