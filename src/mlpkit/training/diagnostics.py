"""What makes the textbook visible: per-layer gradient norms, dead and saturated units, and the
decision boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

import torch
from torch import nn

from mlpkit.models.activations import ACTIVATIONS
from mlpkit.training.callbacks import Callback
from mlpkit.training.state import TrainState
from mlpkit.tasks import BINARY, get_task

if TYPE_CHECKING:
    from mlpkit.training.trainer import Trainer

# "saturated": within 1% of the output range from an asymptote.
# tanh (range 2): |out| > 0.98; sigmoid and step (range 1): out < 0.01 or out > 0.99.
SATURATION = 0.98


class ActivationProbe:
    """Forward hooks on the hidden activations that, while `active`, measure per layer:

    - dead_fraction (rectifier family): units whose input is <= 0 for every sample of the batch,
      i.e. units that output their flat part for the whole val set;
    - saturated_fraction (sigmoid, tanh, step): share of outputs within 1% of an asymptote.
    """

    def __init__(self, model: nn.Module, activation: str):
        self.family = ACTIVATIONS[activation].family
        self.activation = activation
        self.threshold = SATURATION  # on |out| for tanh, on 2|out - 0.5| for sigmoid and step
        self.active = False
        self.values: Dict[str, torch.Tensor] = {}
        self.handles = []
        modules: List[nn.Module] = getattr(model, "activations", [])
        if self.family is not None:
            for i, module in enumerate(modules):
                self.handles.append(module.register_forward_hook(self._hook(i)))

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if not self.active:
                return
            if self.family == "rectifier":
                dead = (inputs[0] <= 0).all(dim=0).float().mean()
                self.values[f"activations/dead_fraction/layer_{i}"] = dead
            else:  # within 1% of an asymptote: tanh in (-1, 1); sigmoid and step in [0, 1]
                dist = output.abs() if self.activation == "tanh" else 2 * (output - 0.5).abs()
                self.values[f"activations/saturated_fraction/layer_{i}"] = (dist > self.threshold).float().mean()
        return hook

    def read(self) -> Dict[str, float]:
        """The values of the last active pass, as floats (one host sync for all)."""
        if not self.values:
            return {}
        keys = list(self.values)
        floats = torch.stack([self.values[k] for k in keys]).tolist()
        self.values = {}
        return dict(zip(keys, floats))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class Diagnostics(Callback):
    """Per epoch: `grads/layer_<i>`, the mean L2 norm of each linear layer's weight gradient (before
    clipping) over the steps sampled (each epoch's first, then every log_every_n_steps), also kept as
    history["grad_norm"]; and the ActivationProbe's fractions over the val pass."""

    name = "diagnostics"

    def __init__(self) -> None:
        self.probe: Optional[ActivationProbe] = None

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        self.weights = [m.weight for m in trainer.model.modules() if isinstance(m, nn.Linear)]
        self.grad_sum = torch.zeros(len(self.weights), device=trainer.device)  # on the device: no sync per step
        self.samples = 0
        activation = getattr(trainer.model, "activation", None)
        self.probe = ActivationProbe(trainer.model, activation) if activation else None

    def on_after_backward(self, trainer: "Trainer", state: TrainState) -> None:
        if state.batch == 0 or state.step % trainer.log_every == 0:
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
            self.grad_sum += torch.stack(torch._foreach_norm(grads))
            self.samples += 1

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.probe is not None:
            self.probe.active = True  # measure the val pass that follows

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.samples:
            norms = (self.grad_sum / self.samples).tolist()
            state.scalars.update({f"grads/layer_{i}": v for i, v in enumerate(norms)})
            state.history.setdefault("grad_norm", []).append(norms)
            self.grad_sum.zero_()
            self.samples = 0
        if self.probe is not None:
            self.probe.active = False
            state.scalars.update(self.probe.read())

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        if self.probe is not None:
            self.probe.remove()
            self.probe = None


@torch.no_grad()
def decision_boundary_figure(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, title: str = ""):
    """A matplotlib figure: the model's predicted class over a grid of the 2-D input plane,
    with the training points on top (the picture of the browser playground)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    was_training = model.training
    model.eval()
    pts = X.detach().float().cpu()
    lo, hi = pts.min(0).values - 0.5, pts.max(0).values + 0.5
    n = 150
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], n), torch.linspace(lo[1], hi[1], n), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    device = next(model.parameters()).device
    out = model(grid.to(device)).float().cpu()
    model.train(was_training)

    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
    labels = y.detach().cpu().reshape(-1)
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    task = get_task(task)
    if task == BINARY:  # one logit: the probability of class 1
        prob = torch.sigmoid(out[:, 0]).reshape(n, n)
        ax.imshow(prob, extent=extent, origin="lower", cmap="RdBu_r", vmin=0, vmax=1, alpha=0.7, aspect="auto")
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1)
        cmap, vmax = "RdBu_r", 1
    elif task.classification:
        cls = out.argmax(1).reshape(n, n)
        ax.imshow(cls, extent=extent, origin="lower", cmap="tab10", vmin=0, vmax=9, alpha=0.45, aspect="auto",
                  interpolation="nearest")
        cmap, vmax = "tab10", 9
    else:
        ax.imshow(out[:, 0].reshape(n, n), extent=extent, origin="lower", cmap="viridis", alpha=0.8, aspect="auto")
        cmap, vmax = "viridis", None
    ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap=cmap, s=10, edgecolors="k", linewidths=0.3, vmin=0, vmax=vmax)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


# matplotlib's "Blues" colour map (ColorBrewer's nine blues, linearly interpolated)
BLUES = ((247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214), (66, 146, 198),
         (33, 113, 181), (8, 81, 156), (8, 48, 107))


def confusion_matrix_image(matrix, classes, title: str = ""):
    """An (H, W, 3) uint8 picture of a confusion matrix: rows the true class, columns the predicted one,
    each cell its count, shaded by the share of its row (so rare classes read as well as common ones).

    Drawn with Pillow (imported by TensorBoard's image encoding anyway) rather than matplotlib, whose
    import costs 0.6-1.5 s at the end of every classification run."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    cm = np.asarray(matrix, dtype=np.int64)
    k = len(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.45 * k)
    width, height = round(size * 100), round(size * 90)  # inches at 100 dpi, as the figure was
    small, label = ImageFont.load_default(11), ImageFont.load_default(14)  # 8 and 10 pt at 100 dpi
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    names = [str(c)[:14] for c in classes] if len(classes) == k else [str(i) for i in range(k)]
    rotate = k > 4

    def extent(text, font):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    name_w = max((extent(n, small)[0] for n in names), default=0)
    line = extent("0", small)[1]
    top_margin = 10 + (extent(title, small)[1] + 12 if title else 0)
    left_margin = 10 + 18 + name_w + 8  # the axis label, the class names, the tick gap
    bottom_margin = 10 + 18 + (name_w if rotate else line) + 8
    cell = max(1, min((width - left_margin - 20) // k, (height - top_margin - bottom_margin) // k))
    x0 = left_margin + (width - left_margin - 20 - cell * k) // 2
    y0 = top_margin

    stops = np.asarray(BLUES, dtype=np.float64)
    pos = np.clip(share, 0, 1) * (len(stops) - 1)
    lo = np.minimum(pos.astype(np.int64), len(stops) - 2)
    frac = (pos - lo)[..., None]
    colours = np.rint(stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)
    pixels = np.asarray(img).copy()
    pixels[y0:y0 + k * cell, x0:x0 + k * cell] = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    draw.rectangle((x0 - 1, y0 - 1, x0 + k * cell, y0 + k * cell), outline="black")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                draw.text((x0 + j * cell + cell / 2, y0 + i * cell + cell / 2), str(cm[i, j]), font=small,
                          anchor="mm", fill="white" if share[i, j] > 0.5 else "black")
    for i, name in enumerate(names):
        centre = i * cell + cell / 2
        draw.text((x0 - 6, y0 + centre), name, font=small, anchor="rm", fill="black")  # true class
        if rotate:  # predicted class, read bottom to top
            w, h = extent(name, small)
            tile = Image.new("RGB", (w + 2, line + 4), "white")
            ImageDraw.Draw(tile).text((w + 1, (line + 4) / 2), name, font=small, anchor="rm", fill="black")
            tile = tile.rotate(90, expand=True)
            img.paste(tile, (round(x0 + centre - tile.width / 2), y0 + k * cell + 6))
        else:
            draw.text((x0 + centre, y0 + k * cell + 6), name, font=small, anchor="mt", fill="black")
    draw.text((x0 + k * cell / 2, height - 10), "predicted class", font=label, anchor="md", fill="black")
    w, h = extent("true class", label)
    tile = Image.new("RGB", (w + 4, h + 8), "white")
    ImageDraw.Draw(tile).text(((w + 4) / 2, (h + 8) / 2), "true class", font=label, anchor="mm", fill="black")
    tile = tile.rotate(90, expand=True)
    img.paste(tile, (10, round(y0 + k * cell / 2 - tile.height / 2)))
    if title:
        draw.text((x0 + k * cell / 2, 10), title, font=small, anchor="mt", fill="black")
    return np.asarray(img)
