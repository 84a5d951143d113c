"""Pipeline, FeatureUnion and ColumnTransformer, converted recursively; the conversion entry point.

:func:`to_compact` walks a fitted estimator: a Pipeline becomes a chain of stages and a head, a
FeatureUnion a :class:`UnionStage` of chains (outputs concatenated, ``transformer_weights``
applied), a ColumnTransformer a :class:`ColumnStage` (each transformer reading one column by
name or position; ``remainder='drop'``). Every other step is converted by the strategy
registered for its class; a step without a strategy, or one whose strategy raises
:class:`~leanml.compress._base.Unsupported`, passes through unchanged (stored with skops) and
the reason is recorded.

After conversion :func:`propagate_pruning` lets pruning cooperate across steps: the head reports
the input columns it still reads, element-wise stages (idf, scaling) pass that mask backwards,
and the first stage able to drop output columns (a vocabulary, a union of vocabularies) drops
them, so pruned weights shrink the vocabulary too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

from leanml.compress._base import (
    ConvertContext,
    Head,
    Node,
    Recipe,
    Stage,
    Unsupported,
    chain_from_payload,
    chain_payload,
    find_strategy,
    register_node,
    register_strategy,
)
from leanml.compress.compact import CompactModel
from leanml.compress.passthrough import SklearnHead, SklearnStage
from leanml.compress.text import TextStage
from leanml.errors import CompressionError

__all__ = ["ColumnStage", "UnionStage", "convert_chain", "propagate_pruning", "to_compact"]


def _hstack(parts: list[Any]) -> Any:
    if any(sp.issparse(p) for p in parts):
        return sp.hstack([sp.csr_matrix(p, dtype=np.float32) for p in parts], format="csr")
    return np.hstack([np.asarray(p, dtype=np.float32) for p in parts])


def _run_chain(chain: list[Stage], X: Any) -> Any:
    for stage in chain:
        X = stage.transform(X)
    return X


def _width(chain: list[Stage], sample: Any) -> int:
    return int(_run_chain(chain, sample).shape[1])


class _ChainsStage(Stage):
    """Common part of FeatureUnion and ColumnTransformer: parallel chains, concatenated."""

    def __init__(self, chains: list[list[Stage]], weights: list[float], widths: list[int]):
        self.chains, self.weights, self.widths = chains, weights, widths

    def _combine(self, parts: list[Any]) -> Any:
        out = []
        for part, weight in zip(parts, self.weights, strict=True):
            out.append(part * np.float32(weight) if weight != 1.0 else part)
        return _hstack(out)

    def can_select_outputs(self) -> bool:
        return all(_chain_can_select(c) for c in self.chains)

    def select_outputs(self, mask: np.ndarray) -> None:
        start = 0
        for i, chain in enumerate(self.chains):
            part = mask[start : start + self.widths[i]]
            start += self.widths[i]
            _chain_select(chain, part)
            self.widths[i] = int(part.sum())

    def _payload_common(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        spec: dict[str, Any] = {"weights": self.weights, "widths": self.widths, "chains": []}
        arrays: dict[str, np.ndarray] = {}
        for i, chain in enumerate(self.chains):
            specs, chain_arrays = chain_payload(list(chain), prefix=f"c{i}.")
            spec["chains"].append(specs)
            arrays.update(chain_arrays)
        return spec, arrays

    @staticmethod
    def _chains_from(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[list[Stage]]:
        chains = []
        for i, specs in enumerate(spec["chains"]):
            nodes = chain_from_payload(specs, arrays, prefix=f"c{i}.")
            chains.append([n for n in nodes if isinstance(n, Stage)])
        return chains


def _chain_can_select(chain: list[Stage]) -> bool:
    for stage in reversed(chain):
        if stage.elementwise:
            continue
        return stage.can_select_outputs()
    return False


def _chain_select(chain: list[Stage], mask: np.ndarray) -> None:
    for stage in reversed(chain):
        if stage.elementwise:
            stage.select_inputs(mask)
            continue
        stage.select_outputs(mask)
        return


@register_node
class UnionStage(_ChainsStage):
    kind = "union"

    def transform(self, X: Any) -> Any:
        return self._combine([_run_chain(c, X) for c in self.chains])

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self._payload_common()

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> UnionStage:
        return cls(cls._chains_from(spec, arrays), spec["weights"], spec["widths"])


@register_node
class ColumnStage(_ChainsStage):
    """ColumnTransformer whose transformers each read one column (by name or position)."""

    kind = "columns"

    def __init__(
        self,
        chains: list[list[Stage]],
        weights: list[float],
        widths: list[int],
        columns: list[Any],
    ) -> None:
        super().__init__(chains, weights, widths)
        self.columns = columns

    def _column(self, X: Any, col: Any) -> Any:
        if isinstance(col, str):
            return list(X[col])
        if hasattr(X, "iloc"):
            return list(X.iloc[:, col])
        return [row[col] for row in X]

    def transform(self, X: Any) -> Any:
        parts = [
            _run_chain(c, self._column(X, col))
            for c, col in zip(self.chains, self.columns, strict=True)
        ]
        return self._combine(parts)

    def transform_one(self, x: Any) -> Any:
        out = self.transform({k: [v] for k, v in x.items()} if isinstance(x, dict) else [x])
        return np.asarray(out.toarray() if sp.issparse(out) else out)[0]

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        spec, arrays = self._payload_common()
        spec["columns"] = self.columns
        return spec, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> ColumnStage:
        return cls(cls._chains_from(spec, arrays), spec["weights"], spec["widths"], spec["columns"])


def convert_chain(
    steps: list[tuple[str, Any]], ctx: ConvertContext, *, path: str = "", final_head: bool
) -> list[Node]:
    """Convert ``(name, fitted step)`` pairs; the last becomes a head when ``final_head``.

    Pass-through steps are reported by their dotted path of step names (``"union.char"``).
    """
    nodes: list[Node] = []
    for i, (step, est) in enumerate(steps):
        is_head = final_head and i == len(steps) - 1
        ctx.input_scale = nodes[-1].output_scale() if nodes else None
        name = f"{path}{step}"
        if isinstance(est, Pipeline):
            inner = [(n, s) for n, s in est.steps if s is not None and s != "passthrough"]
            prefix = name + "." if path or step != type(est).__name__ else ""
            nodes.extend(convert_chain(inner, ctx, path=prefix, final_head=is_head))
            continue
        strategy = find_strategy(est)
        node: Node | None = None
        reason = f"no strategy for {type(est).__name__}"
        if strategy is not None:
            try:
                node = strategy(est, ctx)
            except Unsupported as exc:
                reason = str(exc)
        if node is not None and isinstance(node, Head) != is_head:
            reason, node = f"{type(est).__name__} in an unexpected position", None
        if node is None:
            ctx.note_passthrough(name, reason)
            node = SklearnHead(est) if is_head else SklearnStage(est)
        nodes.append(node)
    return nodes


def _sample_width(est: Any, chain: list[Stage]) -> int:
    for attr in ("n_features_out_",):
        if hasattr(est, attr):
            return int(getattr(est, attr))
    names = est.get_feature_names_out()
    return len(names)


@register_strategy(FeatureUnion)
def _convert_union(union: Any, ctx: ConvertContext) -> UnionStage:
    chains, weights, widths = [], [], []
    tw = union.transformer_weights or {}
    for name, est in union.transformer_list:
        if est in (None, "drop"):
            continue
        chain = convert_chain([(name, est)], ctx, final_head=False)
        chains.append([n for n in chain if isinstance(n, Stage)])
        weights.append(float(tw.get(name, 1.0)))
        widths.append(_sample_width(est, chains[-1]))
    return UnionStage(chains, weights, widths)


@register_strategy(ColumnTransformer)
def _convert_columns(ct: Any, ctx: ConvertContext) -> ColumnStage:
    if ct.remainder != "drop" and not (isinstance(ct.remainder, str) and ct.remainder == "drop"):
        raise Unsupported("ColumnTransformer with remainder other than 'drop'")
    chains, weights, widths, columns = [], [], [], []
    tw = ct.transformer_weights or {}
    for name, est, cols in ct.transformers_:
        if name == "remainder" or est == "drop":
            continue
        if est == "passthrough" or not isinstance(cols, str | int | np.integer):
            raise Unsupported("ColumnTransformer transformers must each read one named column")
        chain = convert_chain([(name, est)], ctx, final_head=False)
        chains.append([n for n in chain if isinstance(n, Stage)])
        weights.append(float(tw.get(name, 1.0)))
        widths.append(_sample_width(est, chains[-1]))
        columns.append(cols if isinstance(cols, str) else int(cols))
    return ColumnStage(chains, weights, widths, columns)


def propagate_pruning(stages: list[Stage], head: Node) -> None:
    """Push the head's unused input columns back to the first stage that can drop them."""
    mask = head.used_inputs()
    pending: list[Node] = [head]
    for stage in reversed(stages):
        if mask is not None and not mask.all():
            if stage.elementwise:
                pending.append(stage)
                continue
            if stage.can_select_outputs():
                for node in pending:
                    node.select_inputs(mask)
                stage.select_outputs(mask)
        mask = stage.used_inputs()
        pending = [stage]


def _use_token_layout(stages: list[Stage], head: Node) -> None:
    """Switch vectorizers to the token-id layout where their consumer can reorder columns."""
    nodes: list[Node] = [*stages, head]
    for i, stage in enumerate(stages):
        if not isinstance(stage, TextStage) or not stage.token_mode_possible():
            continue
        chain: list[Node] = []
        for node in nodes[i + 1 :]:
            chain.append(node)
            if not node.elementwise:
                break
        if chain and not chain[-1].elementwise and all(n.can_permute_inputs() for n in chain):
            perm = stage.to_token_mode()
            for node in chain:
                node.permute_inputs(perm)


def to_compact(
    model: Any, recipe: Recipe | None = None
) -> tuple[CompactModel, list[tuple[str, str]]]:
    """Convert a fitted classifier (or Pipeline ending in one) into a :class:`CompactModel`.

    Returns the model and the list of ``(step, reason)`` for steps that passed through.
    """
    if not hasattr(model, "classes_"):
        raise CompressionError(
            f"Only fitted classifiers can be compressed; {type(model).__name__} has no classes_."
        )
    ctx = ConvertContext(recipe or Recipe())
    nodes = convert_chain([(type(model).__name__, model)], ctx, final_head=True)
    head = nodes[-1]
    if not isinstance(head, Head):  # pragma: no cover - convert_chain guarantees it
        raise CompressionError("The converted model does not end in a classifier.")
    stages = [n for n in nodes[:-1] if isinstance(n, Stage)]
    if ctx.recipe.drop_features:
        propagate_pruning(stages, head)
    _use_token_layout(stages, head)
    compact = CompactModel(stages, head, np.asarray(model.classes_), ctx.recipe.to_json())
    return compact, ctx.passthrough
