"""The multi-layer perceptron: a list of widths, the last layer linear."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from mlpkit.models.activations import check_activation_params, get_activation, make_activation
from mlpkit.models.embeddings import CATEGORY_DIM, clamp_kwargs, embedding_note, encoder_kwargs, make_encoder
from mlpkit.checks import check_range, check_widths
from mlpkit.models.families import FAMILIES, Family
from mlpkit.models.initializers import initialize
from mlpkit.registry import Registry
from mlpkit.schema import (ActivationConfig, EmbeddingConfig, InitConfig, NormConfig, RegularizationConfig, TrainConfig,
                           option_default)

# norm name -> fn(width) -> module, placed between Linear and activation.
NORMS: Registry[Optional[Callable[[int], nn.Module]]] = Registry("norm", {
    "none": None,
    "batch": nn.BatchNorm1d,  # statistics over the batch, per unit
    "layer": nn.LayerNorm,  # statistics over the units, per sample
})



class MLP(nn.Module):
    """in_dim -> [Linear -> norm -> activation -> dropout] per hidden width -> Linear -> out_dim.

    Example: MLP(64, [256, 128], 10, activation="relu", norm="batch", dropout=0.1).
    `hidden=[]` gives a single linear layer (logistic/softmax/linear regression).
    For tables (mlpkit.models.embeddings): `embedding` ("periodic", "piecewise_linear" with `bins`, the
    edges per numeric input) embeds the numbers, `layout` ({"numeric": n, "categories": [cardinalities]})
    says which inputs are numbers and category codes (embedded with `category_dim` each); `clamp` =
    [low, high] clips the outputs in eval mode (regression: the train targets' range).
    `seed`: the initial weights are those torch draws after torch.manual_seed(seed), whatever the
    global RNG holds (which they leave as it was); None draws them from the global RNG.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = ActivationConfig.name, *,
                 activation_params: Optional[dict] = None, norm: str = NormConfig.name,
                 dropout: float = RegularizationConfig.dropout, init: str = InitConfig.name,
                 init_std: Optional[float] = None, init_gain: Optional[float] = None,
                 embedding: str = EmbeddingConfig.name, embedding_params: Optional[dict] = None,
                 layout: Optional[dict] = None, bins: Optional[List[List[float]]] = None,
                 category_dim: int = CATEGORY_DIM,
                 clamp: Optional[Sequence[float]] = None, seed: Optional[int] = TrainConfig.seed):
        super().__init__()
        make_norm = NORMS[norm]
        check_widths(hidden)
        check_range("regularization", "dropout", dropout)
        spec = get_activation(activation)
        params = dict(activation_params or {})
        check_activation_params(activation, params)
        pieces = spec.width_factor(params)

        layers: List[nn.Module] = []
        with _init_rng(seed):  # nn.Linear draws its weights when built
            # a plain MLP has no encoder (and draws nothing for it)
            self.encoder = make_encoder(in_dim, layout, embedding, embedding_params, bins, category_dim)
            width_in = in_dim if self.encoder is None else self.encoder.out_dim
            for width in hidden:
                layers.append(nn.Linear(width_in, width * pieces))  # maxout: k pieces per unit
                if make_norm is not None:
                    layers.append(make_norm(width * pieces))
                layers.append(make_activation(activation, **params))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                width_in = width
            layers.append(nn.Linear(width_in, out_dim))
            self.net = nn.Sequential(*layers)
            slope = params.get("negative_slope", option_default("activation", "leaky_relu", "negative_slope"))
            initialize(self, init, gain_name=spec.gain_name, slope=float(slope), std=init_std, gain=init_gain)
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, list(hidden)
        self.activation = activation
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))

    @property
    def autograd_only(self) -> bool:
        """An input encoder has no hand-written backward (mlpkit.models.backprop)."""
        return self.encoder is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_dim) -> (N, out_dim)
        if self.encoder is not None:
            x = self.encoder(x)
        out = self.net(x)
        if self.clamp is not None and not self.training:
            out = out.clamp(*self.clamp)
        return out

    @property
    def linears(self) -> List[nn.Linear]:
        """The linear layers, index 0 nearest the input (the `layer_<i>` of the logs)."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    @property
    def activations(self) -> List[nn.Module]:
        """The hidden activation modules, in order."""
        kinds = (nn.Linear, nn.Dropout, nn.BatchNorm1d, nn.LayerNorm)
        return [m for m in self.net if not isinstance(m, kinds)]


@contextlib.contextmanager
def _init_rng(seed: Optional[int]) -> Iterator[None]:
    """The CPU RNG seeded with `seed` inside, and back as it was after (None: left alone)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):  # CPU only: the layers are built there
        torch.default_generator.manual_seed(seed)
        yield


def _model_kwargs(cfg: Any, data: Any) -> dict:
    act = {k: v for k, v in dict(cfg.activation).items() if k != "name" and v is not None}
    return {"in_dim": data.in_dim, "hidden": list(cfg.model.hidden), "out_dim": data.out_dim,
            "activation": cfg.activation.name, "activation_params": act, "norm": cfg.norm.name,
            "dropout": float(cfg.regularization.dropout), "init": cfg.init.name, "init_std": cfg.init.std,
            "init_gain": cfg.init.gain, **encoder_kwargs(cfg, data), **clamp_kwargs(cfg, data)}


def _head(cfg: Any, device: Any) -> str:
    return (f"{cfg.model.name}, activation={cfg.activation.name}, norm={cfg.norm.name}, init={cfg.init.name}"
            f"{embedding_note(cfg)}, device={device}")


# The MLP as a model family (mlpkit.models.families): every config group applies, gradient descent trains it.
FAMILY = Family(name="mlp", make=MLP, model_kwargs=_model_kwargs, head=_head, what="a multi-layer perceptron",
                settings=("category_dim", "clamp_output"),
                ranges={"category_dim": dict(low=1, high=1024)})

# model name -> builder(in_dim=..., out_dim=..., **the model's own keyword arguments)
MODELS: Registry[Callable[..., nn.Module]] = FAMILIES.builders()


def summarize(model: nn.Module, in_dim: int) -> Tuple[List[Tuple[str, str, int]], int]:
    """(layer, output shape, parameters) per top-level layer, from one forward pass on a dummy batch."""
    rows: List[Tuple[str, str, int]] = []
    seq = model.net if hasattr(model, "net") else model
    children = list(seq.named_children())
    if getattr(model, "encoder", None) is not None:
        children.insert(0, ("encoder", model.encoder))
    hooks = []
    for name, module in children:
        def hook(mod, inp, out, name=name):
            n_params = sum(p.numel() for p in mod.parameters())
            rows.append((f"{name}: {mod.__class__.__name__}", str(tuple(["N", *out.shape[1:]])), n_params))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        with torch.no_grad():
            model(torch.zeros(2, in_dim, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows, sum(p.numel() for p in model.parameters())


def format_summary(rows: List[Tuple[str, str, int]], total: int) -> str:
    """The summary rows as a text table."""
    w0 = max([len("layer"), *(len(r[0]) for r in rows)])
    w1 = max([len("output shape"), *(len(r[1]) for r in rows)])
    lines = [f"{'layer':<{w0}}  {'output shape':<{w1}}  {'params':>10}", "-" * (w0 + w1 + 14)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>10,}" for a, b, c in rows]
    lines += ["-" * (w0 + w1 + 14), f"{'total':<{w0}}  {'':<{w1}}  {total:>10,}"]
    return "\n".join(lines)
