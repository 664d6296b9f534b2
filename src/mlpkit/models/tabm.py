"""TabM (Gorishniy et al. 2024, yandex-research/tabm): k MLPs in one, by BatchEnsemble.

Each hidden layer is one shared weight W with per-member scalings r_i (inputs), s_i (outputs) and biases b_i:

    member i:  h -> ((h * r_i) W^T) * s_i + b_i          (N, k, d_in) -> (N, k, d_out)

The "tabm" variant of their code: the first layer's r_i start as random signs (+1/-1), every other r and s
at 1, each layer's k biases from one draw; the output layer is k separate linear heads. Every member sees
the same batch; the loss is the mean of the members' losses (the Trainer's GradientDescent does that for a
(N, k, out) output). In eval mode forward returns the members' average as one output (the task's
`mean_of_members`: the logits of the mean probability, or the mean value), so that metrics, predict.py and
the ONNX export see an ordinary model.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch
from torch import nn

from mlpkit.checks import check_range, check_widths
from mlpkit.models.activations import check_activation_params, get_activation, make_activation
from mlpkit.models.embeddings import CATEGORY_DIM, _uniform_, clamp_kwargs, encoder_kwargs, make_encoder, embedding_note
from mlpkit.models.families import Family
from mlpkit.models.initializers import initialize
from mlpkit.models.mlp import _init_rng
from mlpkit.schema import ActivationConfig, EmbeddingConfig, InitConfig, RegularizationConfig, option_default
from mlpkit.tasks import get_task


class BatchEnsembleLinear(nn.Module):
    """k members sharing `linear.weight` (out, in), each with its own r (in), s (out) and bias (out)."""

    def __init__(self, d_in: int, d_out: int, k: int, first: bool = False):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)  # U(-1/sqrt(d_in), 1/sqrt(d_in)), as tabm's
        self.r = nn.Parameter(torch.ones(k, d_in))
        if first:
            self.r.data.bernoulli_(0.5).mul_(2).sub_(1)  # random signs
        self.s = nn.Parameter(torch.ones(k, d_out))
        self.bias = nn.Parameter(_uniform_(torch.empty(d_out), d_in).repeat(k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, k, d_in) -> (N, k, d_out)
        return self.linear(x * self.r) * self.s + self.bias


class LinearEnsemble(nn.Module):
    """k separate linear layers, one per member: (N, k, d_in) -> (N, k, d_out)."""

    def __init__(self, d_in: int, d_out: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(_uniform_(torch.empty(k, d_in, d_out), d_in))
        self.bias = nn.Parameter(_uniform_(torch.empty(k, d_out), d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nki,kio->nko", x, self.weight) + self.bias


class TabM(nn.Module):
    """in_dim -> [BatchEnsembleLinear -> activation -> dropout] per hidden width -> k heads -> out_dim.

    Example: TabM(20, [256, 256, 256], 1, task="binary", k=32). Train mode: (N, k, out_dim), one output per
    member; eval mode: (N, out_dim), the members' average (see the module's docstring). The table options
    (embedding, layout, bins, category_dim, clamp) are the MLP's (mlpkit.models.mlp.MLP).
    """

    autograd_only = True  # no hand-written backward for ensembles

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, task: str, *,
                 k: int = option_default("model", "tabm", "k"), activation: str = ActivationConfig.name,
                 activation_params: Optional[dict] = None, dropout: float = RegularizationConfig.dropout,
                 init: str = InitConfig.name, init_std: Optional[float] = None, init_gain: Optional[float] = None,
                 embedding: str = EmbeddingConfig.name, embedding_params: Optional[dict] = None,
                 layout: Optional[dict] = None, bins: Optional[List[List[float]]] = None,
                 category_dim: int = CATEGORY_DIM,
                 clamp: Optional[Sequence[float]] = None, seed: Optional[int] = None):
        super().__init__()
        check_widths(hidden)
        check_range("regularization", "dropout", dropout)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1024:
            raise ValueError(f"k={k!r} must be an integer from 1 to 1024")
        if not hidden:
            raise ValueError("TabM needs at least one hidden layer (model.hidden)")
        spec = get_activation(activation)
        params = dict(activation_params or {})
        check_activation_params(activation, params)
        if spec.width_factor(params) != 1:
            raise ValueError(f"activation={activation} is not available for TabM")
        self.task = get_task(task)
        layers: List[nn.Module] = []
        with _init_rng(seed):
            self.encoder = make_encoder(in_dim, layout, embedding, embedding_params, bins, category_dim)
            width_in = in_dim if self.encoder is None else self.encoder.out_dim
            for i, width in enumerate(hidden):
                layers += [BatchEnsembleLinear(width_in, width, k, first=i == 0), make_activation(activation, **params)]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                width_in = width
            self.net = nn.Sequential(*layers)
            self.head = LinearEnsemble(width_in, out_dim, k)
            slope = params.get("negative_slope", option_default("activation", "leaky_relu", "negative_slope"))
            initialize(self.net, init, gain_name=spec.gain_name, slope=float(slope), std=init_std, gain=init_gain)
        self.in_dim, self.out_dim, self.hidden, self.k = in_dim, out_dim, list(hidden), k
        self.activation = activation
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, k, out_dim): every member's output."""
        h = x if self.encoder is None else self.encoder(x)
        return self.head(self.net(h.unsqueeze(1).expand(-1, self.k, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members(x)
        if self.training:
            return out
        out = self.task.mean_of_members(out)
        if self.clamp is not None:
            out = out.clamp(*self.clamp)
        return out

    @property
    def linears(self) -> List[nn.Linear]:
        """The shared weights of the hidden layers (the `layer_<i>` of the logs)."""
        return [m for m in self.net.modules() if isinstance(m, nn.Linear)]

    @property
    def activations(self) -> List[nn.Module]:
        kinds = (BatchEnsembleLinear, nn.Linear, nn.Dropout)
        return [m for m in self.net if not isinstance(m, kinds)]


def _model_kwargs(cfg: Any, data: Any) -> dict:
    act = {k: v for k, v in dict(cfg.activation).items() if k != "name" and v is not None}
    return {"in_dim": data.in_dim, "hidden": list(cfg.model.hidden), "out_dim": data.out_dim,
            "task": data.task.name, "k": int(cfg.model.k), "activation": cfg.activation.name,
            "activation_params": act, "dropout": float(cfg.regularization.dropout), "init": cfg.init.name,
            "init_std": cfg.init.std, "init_gain": cfg.init.gain, **encoder_kwargs(cfg, data),
            **clamp_kwargs(cfg, data)}


def _head(cfg: Any, device: Any) -> str:
    return (f"tabm, k={cfg.model.k}, activation={cfg.activation.name}, init={cfg.init.name}{embedding_note(cfg)}, "
            f"device={device}")


FAMILY = Family(name="tabm", make=TabM, model_kwargs=_model_kwargs, head=_head,
                what="an ensemble of k MLPs sharing their weights (BatchEnsemble)",
                settings=("k", "category_dim", "clamp_output"),
                ranges={"k": dict(low=1, high=1024), "category_dim": dict(low=1, high=1024)},
                unused_groups=("norm",))
