"""Training settings that `lookalike train` builds and hands to the library.

They import nothing heavy (no torch), so that a command's parser can show their defaults and
the command line starts fast; the library that uses them is imported when the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainSettings:
    """Everything that decides the result; saved in the checkpoint and the model file."""

    epochs: int = 150  # one epoch = every photo is an anchor once
    minutes: float | None = None  # stop (and save) once the whole run has taken this long
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    temperature: float = 0.05
    views: int = 0  # augmented copies per photo; measured no gain on the dev photos (docs)
    short_side: int = 350  # the augnet method's input size; smaller only for quick tests
    view_side: int = 256  # short side of the augmented copies
    pair_prob: float = 0.5  # chance that an anchor with verified partners uses one
    full_prob: float = 0.5  # chance that a view is the whole photo rather than a crop
    neighbours: int = 10  # above `all_pairs_limit` photos, verify only this many neighbours
    all_pairs_limit: int = 200

    def prep_key(self) -> dict[str, Any]:
        """The settings the cached feature maps and pairs depend on."""
        return {"seed": self.seed, "views": self.views, "short_side": self.short_side,
                "view_side": self.view_side, "neighbours": self.neighbours,
                "all_pairs_limit": self.all_pairs_limit}
