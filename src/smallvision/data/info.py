"""`DatasetInfo`: the metadata that travels from a data set into the model and the checkpoint.

Predict/serve rebuild preprocessing from it (class names, channels, size, mean, std), so a
model never meets inputs prepared differently from the ones it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]  # per channel, on pixels scaled to [0, 1]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(default=())
    # declared by the data set: light strokes on a dark square, as MNIST was made (predict then
    # inverts a dark-on-light scan and crops/centres the ink); None in checkpoints written before
    # data sets declared it (predict falls back to the name rule, `looks_like_digits`)
    digit_style: bool | None = None
    # several labels per image (data/multilabel.py): multi-hot targets, one sigmoid per class
    multilabel: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def is_digit_style(self) -> bool:
        """What the data set declared (`digit_style`); older checkpoints: the name rule."""
        if self.digit_style is not None:
            return self.digit_style and self.channels == 1
        return looks_like_digits(self.name, self.channels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        return cls(
            name=d["name"],
            num_classes=int(d["num_classes"]),
            channels=int(d["channels"]),
            height=int(d["height"]),
            width=int(d["width"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            class_names=tuple(str(c) for c in d.get("class_names", ())),
            digit_style=d.get("digit_style"),
            multilabel=bool(d.get("multilabel", False)),
        )


DIGIT_NAMES = ("mnist", "kmnist", "emnist", "digits", "qmnist")


def looks_like_digits(name: str, channels: int) -> bool:
    """For users' own files (idx:, csv:, npz:) whose entry cannot know: grayscale and named like
    a digit set (seed 004's mnist_train.csv), not Fashion-MNIST."""
    name = name.lower()
    return channels == 1 and "fashion" not in name and any(d in name for d in DIGIT_NAMES)
