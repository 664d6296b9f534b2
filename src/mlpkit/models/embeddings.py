"""Input encoders for tables: numeric feature embeddings and learned category embeddings.

A row of X is [numbers | other dense inputs | category codes] (mlpkit.data.dataset.InputLayout). An
`InputEncoder` turns it into the vector the MLP body reads:

    numbers        -> EMBEDDINGS[name] per feature, (N, n_num * dim) (`none`: as they are)
    dense inputs   -> as they are (missing-value indicators, one-hot columns)
    category codes -> nn.Embedding(cardinality, category_dim) per column

Numeric embeddings (Gorishniy et al. 2022, yandex-research/rtdl-num-embeddings, whose formulas these follow):

    periodic (PLR):         v = ReLU(W_j [cos(2 pi c_j x_j), sin(2 pi c_j x_j)] + b_j),  c_j ~ N(0, sigma), |c| <= 3 sigma
    piecewise_linear (PLE): e_t = (x_j - edge_t) / (edge_{t+1} - edge_t), clipped to [0, 1] (the first bin only
                            above, the last only below), edges at train-split quantiles; v = ReLU(W_j e + b_j)

`lite=true` shares one W, b between the features. Everything an encoder is built from is plain data (the bin
edges are numbers computed from the train split by `quantile_bins`), so a run's model.json describes it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mlpkit.data.dataset import InputLayout
from mlpkit.registry import Registry
from mlpkit.schema import BINNINGS, option_defaults


CATEGORY_DIM = 16  # model.category_dim when unset


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = fan_in ** -0.5
    return nn.init.uniform_(t, -bound, bound)


class FeatureLinear(nn.Module):
    """A linear layer per feature (or one shared, `lite`), then ReLU: (N, n, d_in) -> (N, n * d_out)."""

    def __init__(self, n: int, d_in: int, d_out: int, lite: bool = False):
        super().__init__()
        shape = (d_in, d_out) if lite else (n, d_in, d_out)
        self.weight = nn.Parameter(_uniform_(torch.empty(shape), d_in))
        self.bias = nn.Parameter(_uniform_(torch.empty(shape[:-2] + (d_out,)), d_in))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() == 2:
            out = z @ self.weight + self.bias
        else:
            out = torch.einsum("bnf,nfd->bnd", z, self.weight) + self.bias
        return torch.relu(out).flatten(1)


class Periodic(nn.Module):
    """PLR: (N, n) numbers -> (N, n * dim)."""

    def __init__(self, n: int, *, dim: int, frequencies: int, sigma: float, lite: bool = False, bins: Any = None):
        super().__init__()
        self.frequencies = nn.Parameter(torch.empty(n, frequencies))
        nn.init.trunc_normal_(self.frequencies, 0.0, sigma, a=-3 * sigma, b=3 * sigma)
        self.linear = FeatureLinear(n, 2 * frequencies, dim, lite)
        self.out_dim = n * dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * self.frequencies * x[..., None]  # (N, n, k)
        return self.linear(torch.cat([torch.cos(z), torch.sin(z)], -1))


class PiecewiseLinear(nn.Module):
    """PLE: (N, n) numbers -> (N, n * dim), with the bin edges of each feature (2 or more, increasing)."""

    def __init__(self, n: int, *, dim: int, bins: Sequence[Sequence[float]], lite: bool = False):
        super().__init__()
        edges = [torch.as_tensor(e, dtype=torch.float64) for e in bins]
        if len(edges) != n or any(e.dim() != 1 or len(e) < 2 or not bool((e.diff() > 0).all()) for e in edges):
            raise ValueError(f"bins: {n} lists of 2 or more increasing edges are needed, one per numeric input")
        width = max(len(e) - 1 for e in edges)
        w, b = torch.zeros(n, width, dtype=torch.float64), torch.zeros(n, width, dtype=torch.float64)
        for j, e in enumerate(edges):  # [first bins..., padding 0s..., last bin], as rtdl-num-embeddings lays it out
            scale = 1.0 / e.diff()
            shift = -e[:-1] * scale
            w[j, -1], b[j, -1] = scale[-1], shift[-1]
            w[j, :len(e) - 2], b[j, :len(e) - 2] = scale[:-1], shift[:-1]
        self.register_buffer("scale", w.float())
        self.register_buffer("shift", b.float())
        self.register_buffer("single", torch.tensor([len(e) == 2 for e in edges]))  # one bin: no clipping
        self.linear = FeatureLinear(n, width, dim, lite)
        self.out_dim = n * dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n) -> (N, n, bins): each bin's component, clipped."""
        z = torch.addcmul(self.shift, self.scale, x[..., None])
        if z.shape[-1] == 1:
            return torch.where(self.single[:, None], z, z.clamp_min(0.0))
        last = torch.where(self.single[:, None], z[..., -1:], z[..., -1:].clamp_min(0.0))
        return torch.cat([z[..., :1].clamp_max(1.0), z[..., 1:-1].clamp(0.0, 1.0), last], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encode(x))


# embedding name -> its module class (None: numbers go in as they are); the settings each takes
EMBEDDINGS: Registry[Optional[type]] = Registry("embedding", {
    "none": None, "periodic": Periodic, "piecewise_linear": PiecewiseLinear,
}, settings={"periodic": ("dim", "frequencies", "sigma", "lite"),
             "piecewise_linear": ("dim", "bins", "lite", "binning")})


def quantile_bins(X: Any, n_bins: int) -> List[List[float]]:
    """Per column of X (rows, n): the edges at its 0, 1/n_bins, ..., 1 quantiles, repeated edges dropped
    (rtdl-num-embeddings' compute_bins); a constant column gets [v, v + 1]."""
    X = np.asarray(X, dtype=np.float64)
    q = np.quantile(X, np.linspace(0.0, 1.0, n_bins + 1), axis=0).T if len(X) else np.zeros((X.shape[1], 1))
    out = []
    for col in q:
        edges = np.unique(col)
        out.append([float(v) for v in (edges if len(edges) >= 2 else [edges[0], edges[0] + 1.0])])
    return out


TREE_LEAF_ROWS, TREE_MIN_GAIN = 64, 1e-4  # rtdl-num-embeddings' example for tree-based bins (Section 3.2.2)


def tree_bins(X: Any, y: Any, n_bins: int, regression: bool) -> List[List[float]]:
    """Per column of X (rows, n): the split thresholds of a decision tree of at most n_bins leaves that
    predicts y from that column alone (DecisionTreeRegressor on a regression target, DecisionTreeClassifier
    on class indices; leaves of 64+ rows, gains of 1e-4+), with the column's min and max; repeated edges
    dropped (rtdl-num-embeddings' compute_bins with tree_kwargs); a constant column gets [v, v + 1]."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(len(X), -1)[:, 0] if len(X) else np.zeros(0)
    make = DecisionTreeRegressor if regression else DecisionTreeClassifier
    target = y.astype(np.float64) if regression else y.astype(np.int64)
    out = []
    for col in X.T:
        lo, hi = (float(col.min()), float(col.max())) if len(col) else (0.0, 0.0)
        edges = [lo, hi]
        if hi > lo and n_bins >= 2:
            tree = make(max_leaf_nodes=n_bins, min_samples_leaf=TREE_LEAF_ROWS, min_impurity_decrease=TREE_MIN_GAIN,
                        random_state=0).fit(col.reshape(-1, 1), target).tree_
            split = tree.children_left != tree.children_right
            edges += [float(t) for t in tree.threshold[split]]
        edges = sorted(set(edges))
        out.append(edges if len(edges) >= 2 else [edges[0], edges[0] + 1.0])
    return out


class InputEncoder(nn.Module):
    """[numbers | dense | category codes] -> [numeric embeddings | dense | category vectors]."""

    def __init__(self, in_dim: int, numeric: int, categories: Sequence[int], *, embedding: str = "none",
                 embedding_params: Optional[dict] = None, bins: Optional[Sequence[Sequence[float]]] = None,
                 category_dim: int = CATEGORY_DIM):
        super().__init__()
        cls = EMBEDDINGS[embedding]
        params = dict(embedding_params or {})
        EMBEDDINGS.check_settings(embedding, params)
        params = {**option_defaults("embedding", embedding), **params}
        params.pop("bins", None)  # the count; the edges come in `bins`
        params.pop("binning", None)  # how the edges were found
        self.n_num = numeric
        self.n_cat = len(categories)
        self.n_dense = in_dim - numeric - self.n_cat
        if self.n_dense < 0 or numeric < 0:
            raise ValueError(f"a layout of {numeric} numbers and {self.n_cat} category codes does not fit "
                             f"{in_dim} inputs")
        self.numbers = cls(numeric, bins=bins, **params) if cls is not None and numeric else None
        self.categories = nn.ModuleList(nn.Embedding(int(c), category_dim) for c in categories)
        for emb in self.categories:  # rtdl's CategoricalEmbeddings: U(-1/sqrt(d), 1/sqrt(d))
            _uniform_(emb.weight.data, category_dim)
        self.register_buffer("max_code", torch.tensor([int(c) - 1 for c in categories], dtype=torch.long))
        self.out_dim = ((self.numbers.out_dim if self.numbers is not None else numeric) + self.n_dense
                        + self.n_cat * category_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_dim) -> (N, out_dim)
        parts = [x[:, :self.n_num] if self.numbers is None else self.numbers(x[:, :self.n_num]),
                 x[:, self.n_num:self.n_num + self.n_dense]]
        if self.n_cat:  # codes outside [0, cardinality) (none in preprocessed data) go to the nearest valid one
            codes = torch.minimum(x[:, -self.n_cat:].round().long().clamp_min(0), self.max_code)
            parts += [emb(codes[:, i]) for i, emb in enumerate(self.categories)]
        return torch.cat(parts, 1)


def make_encoder(in_dim: int, layout: Optional[dict], embedding: str, embedding_params: Optional[dict],
                 bins: Any, category_dim: int) -> Optional[InputEncoder]:
    """The encoder of these settings, or None when there is nothing to encode (every input a plain number)."""
    layout = dict(layout or {})
    categories = [int(c) for c in layout.get("categories", [])]
    numeric = InputLayout(int(layout.get("numeric", -1)), tuple(categories)).numbers(in_dim)
    if embedding == "none" and not categories:
        EMBEDDINGS[embedding]  # an unknown name: the registry's message
        return None
    return InputEncoder(in_dim, numeric, categories, embedding=embedding, embedding_params=embedding_params,
                        bins=bins, category_dim=category_dim)


def encoder_kwargs(cfg: Any, data: Any) -> Dict[str, Any]:
    """The model arguments of the config's embedding and the data's layout (none: {}, a plain model)."""
    layout = data.layout
    emb = cfg.embedding
    if emb.name == "none" and not layout.categories:
        return {}
    params = {k: v for k, v in dict(emb).items() if k != "name" and v is not None}
    kwargs: Dict[str, Any] = {"embedding": emb.name, "embedding_params": params, "layout": layout.to_json(),
                              "category_dim": int(cfg.model.category_dim or CATEGORY_DIM)}
    if emb.name == "piecewise_linear":
        n_num = layout.numbers(data.in_dim)
        n_bins = int(params.get("bins") or option_defaults("embedding", emb.name)["bins"])
        if params.get("binning", "quantile") == "tree":
            X, y = data.train_sample(n_num)
            kwargs["bins"] = tree_bins(X, y, n_bins, regression=not data.task.classification)
        else:
            X = data.train_inputs(n_num)
            kwargs["bins"] = quantile_bins(X, min(n_bins, max(1, len(X) - 1)))
    return kwargs


def check_kwargs(bad: Any, kwargs: dict, in_dim: int) -> None:
    """Raise bad(field, problem) for an encoder field of model.json that is not what a run writes."""
    if "layout" in kwargs:
        layout = kwargs["layout"]
        cats = layout.get("categories") if isinstance(layout, dict) else None
        numeric = layout.get("numeric") if isinstance(layout, dict) else None
        if not isinstance(cats, list) or len(cats) > in_dim or not all(
                isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 2 ** 24 for c in cats):
            raise bad("kwargs.layout.categories", "must be a list of cardinalities (integers >= 1), one per code")
        if isinstance(numeric, bool) or not isinstance(numeric, int) or not -1 <= numeric <= in_dim - len(cats):
            raise bad("kwargs.layout.numeric", f"must be an integer from -1 to {in_dim - len(cats)}")
    if kwargs.get("embedding", "none") not in EMBEDDINGS:
        raise bad("kwargs.embedding", f"is {kwargs.get('embedding')!r}; allowed: {', '.join(EMBEDDINGS)}")
    if "embedding_params" in kwargs and not isinstance(kwargs["embedding_params"], dict):
        raise bad("kwargs.embedding_params", "must be an object")
    for key, limit in (("dim", 1024), ("frequencies", 1024), ("bins", 1024)):
        value = (kwargs.get("embedding_params") or {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit):
            raise bad(f"kwargs.embedding_params.{key}", f"must be an integer from 1 to {limit}")
    binning = (kwargs.get("embedding_params") or {}).get("binning")
    if binning is not None and binning not in BINNINGS:
        raise bad("kwargs.embedding_params.binning", f"must be one of {', '.join(BINNINGS)}")
    cdim = kwargs.get("category_dim", CATEGORY_DIM)
    if isinstance(cdim, bool) or not isinstance(cdim, int) or not 1 <= cdim <= 1024:
        raise bad("kwargs.category_dim", "must be an integer from 1 to 1024")
    if "bins" in kwargs:
        bins = kwargs["bins"]
        if not isinstance(bins, list) or len(bins) > in_dim or not all(
                isinstance(e, list) and 2 <= len(e) <= 1025 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in e)
                and all(a < b for a, b in zip(e, e[1:])) for e in bins):
            raise bad("kwargs.bins", "must be a list (one per numeric input) of 2 to 1025 increasing finite edges")
    if "clamp" in kwargs:
        c = kwargs["clamp"]
        if not isinstance(c, list) or len(c) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in c) \
                or c[0] > c[1]:
            raise bad("kwargs.clamp", "must be [low, high], two finite numbers with low <= high")


def encoder_size(kwargs: dict, in_dim: int) -> int:
    """How many values an encoder of these (checked) model.json arguments holds, at least."""
    layout = kwargs.get("layout") or {}
    cats = layout.get("categories", [])
    n_num = InputLayout(layout.get("numeric", -1), tuple(cats)).numbers(in_dim)
    p = {**option_defaults("embedding", kwargs.get("embedding", "none")), **(kwargs.get("embedding_params") or {})}
    size = sum(cats) * int(kwargs.get("category_dim", CATEGORY_DIM))
    if kwargs.get("embedding") == "periodic":
        size += n_num * p["frequencies"] + (1 if p.get("lite") else n_num) * 2 * p["frequencies"] * p["dim"]
    elif kwargs.get("embedding") == "piecewise_linear":
        width = max((len(e) - 1 for e in kwargs.get("bins") or []), default=1)
        size += (1 if p.get("lite") else n_num) * width * p["dim"]
    return size


def clamp_kwargs(cfg: Any, data: Any) -> Dict[str, Any]:
    """{"clamp": [low, high]} (the train targets' range, in the model's standardised units) when
    model.clamp_output is on for a regression run, else {}."""
    if not cfg.model.clamp_output or data.task.classification:
        return {}
    return {"clamp": list(data.target_range())}



def embedding_note(cfg: Any) -> str:
    """`, embedding=periodic` for the log's model line (nothing for none)."""
    return f", embedding={cfg.embedding.name}" if cfg.embedding.name != "none" else ""
