"""Knowledge distillation (Hinton et al., 2015): a student also learns the softened probabilities
of one or more trained runs, `--teacher RUN[,RUN...]`.

The teachers run in eval mode, fp32, on each training batch as the student sees it (augmented
and mixed alike), so any augmentation works; their probabilities at temperature T are averaged
(an ensemble teacher). The student's loss is

    (1 - α) · task loss(student, labels) + α · T² · KL(teachers_T ‖ student_T)

(T² keeps the soft term's gradient scale independent of T). A teacher's own normalisation is
restored from the student's input, so a teacher trained with other statistics (or ImageNet
weights) sees its own kind of input; the image size and the classes must match. Teachers run
without their test-time views (one forward per batch, not ten).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError


class Teachers:
    def __init__(self, models: list[torch.nn.Module], shifts: list[tuple[torch.Tensor, torch.Tensor] | None],
                 temperature: float) -> None:
        self.models, self.shifts, self.temperature = models, shifts, temperature

    @torch.no_grad()  # not inference_mode: its tensors could not enter the student's loss graph
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' mean probabilities at temperature T for the student's input batch."""
        out = 0.0
        for m, shift in zip(self.models, self.shifts, strict=True):
            xt = x.float() if shift is None else x.float() * shift[0] + shift[1]
            out = out + F.softmax(m(xt).float() / self.temperature, dim=1)
        return out / len(self.models)  # type: ignore[operator]


def load_teachers(paths: list[str], info: DatasetInfo, device: torch.device, temperature: float) -> Teachers:
    """Each run folder or checkpoint's best weights, checked against the student's data set."""
    from smallvision.modelfile import load_model

    if info.multilabel:
        raise UsageError("--teacher distils softmax probabilities; it is for single-label data sets")
    models, shifts = [], []
    mean_s, std_s = torch.tensor(info.mean, device=device), torch.tensor(info.std, device=device)
    for p in paths:
        model, meta = load_model(p, device)
        t = DatasetInfo.from_dict(meta["dataset"])
        names_t, names_s = list(t.class_names), list(info.class_names)
        if t.multilabel or t.num_classes != info.num_classes or (names_t and names_s and names_t != names_s):
            raise UsageError(f"--teacher {p}: it predicts {t.num_classes} classes ({', '.join(names_t[:5])}"
                             f"{', ...' if len(names_t) > 5 else ''}) but {info.name} has {info.num_classes} "
                             f"({', '.join(names_s[:5])}{', ...' if len(names_s) > 5 else ''}); a teacher must know "
                             "the student's classes")
        if t.input_shape != info.input_shape:
            raise UsageError(f"--teacher {p}: it takes {'×'.join(map(str, t.input_shape))} images, the student "
                             f"{'×'.join(map(str, info.input_shape))}")
        model = model.float().eval().requires_grad_(False)
        model.tta_views = ()  # one pass per batch: test-time views would multiply the teacher's cost by 10
        models.append(model)
        mean_t, std_t = torch.tensor(t.mean, device=device), torch.tensor(t.std, device=device)
        if torch.allclose(mean_t, mean_s) and torch.allclose(std_t, std_s):
            shifts.append(None)
        else:  # x_t = (pixel - mean_t) / std_t with pixel = x_s * std_s + mean_s
            scale = (std_s / std_t).view(1, -1, 1, 1)
            shifts.append((scale, ((mean_s - mean_t) / std_t).view(1, -1, 1, 1)))
    return Teachers(models, shifts, temperature)


def distill_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(teacher ‖ student), both at temperature T, averaged over the batch."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_s, teacher_probs, reduction="batchmean") * temperature**2


__all__: list[Any] = ["Teachers", "distill_loss", "load_teachers"]
