"""MLPClassifier: weights in fp32 / fp16 / int8 (one scale per neuron), optional dynamic
quantization of the hidden activations.

Stored: each layer's weights (neurons x inputs, quantized per neuron row) and biases (fp32);
solver state, loss curves and the like are dropped. Magnitude pruning zeroes the smallest
weights of every layer (the first layer weighted by the input columns' typical size); an input
column whose first-layer weights are all pruned is dropped, and the vectorizer drops the term.

With ``Recipe.dynamic_activations`` each hidden activation vector is quantized to int8 with a
per-sample scale ``max|a| / 127`` before the next layer (error <= scale / 2 per activation), as
int8 inference engines do; the guard measures the effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neural_network import MLPClassifier

from leanml.compress._base import ConvertContext, Head, SparseRow, register_node, register_strategy
from leanml.compress._quant import decode_matrix, encode_matrix
from leanml.compress.linear import prune_weights

__all__ = ["MLPHead"]

_ACT = {
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "logistic": lambda z: np.divide(1.0, 1.0 + np.exp(-z), out=z),
    "identity": lambda z: z,
}


def _quantize_rows(a: np.ndarray) -> np.ndarray:
    peak = np.max(np.abs(a), axis=-1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return (np.rint(a / scale) * scale).astype(np.float32)


@register_node
class MLPHead(Head):
    kind = "mlp"
    has_decision = False

    def __init__(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        *,
        activation: str,
        out_activation: str,
        precision: str = "fp32",
        dynamic_activations: bool = False,
    ) -> None:
        # stored transposed, (in, out), the layout the forward pass multiplies with
        self._wt = [np.ascontiguousarray(np.asarray(w, dtype=np.float32).T) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float32) for b in biases]
        self.activation, self.out_activation = activation, out_activation
        self.precision, self.dynamic_activations = precision, dynamic_activations

    @property
    def weights(self) -> list[np.ndarray]:
        """Per layer (out, in) views of the stored matrices."""
        return [w.T for w in self._wt]

    def _forward(self, first: np.ndarray) -> np.ndarray:
        z = first
        n_layers = len(self._wt)
        for i in range(n_layers):
            if i:
                z = z @ self._wt[i] + self.biases[i]
            if i < n_layers - 1:
                z = _ACT[self.activation](z)
                if self.dynamic_activations:
                    z = _quantize_rows(z)
        z = np.asarray(z, dtype=np.float64)
        if self.out_activation == "softmax":
            z = z - z.max(axis=-1, keepdims=True)
            np.exp(z, out=z)
            return z / z.sum(axis=-1, keepdims=True)
        p = 1.0 / (1.0 + np.exp(-z))
        return np.concatenate([1 - p, p], axis=-1) if p.shape[-1] == 1 else p

    def proba(self, X: Any) -> np.ndarray:
        return self._forward(np.asarray(X @ self._wt[0]) + self.biases[0])

    def proba_one(self, x: Any) -> np.ndarray:
        if isinstance(x, SparseRow):
            first = x.values @ self._wt[0][x.indices] + self.biases[0]
        else:
            first = np.asarray(x, dtype=np.float32) @ self._wt[0] + self.biases[0]
        return self._forward(first[None, :])[0]

    def predict_index(self, X: Any) -> np.ndarray:
        return np.argmax(self.proba(X), axis=1)

    def predict_index_one(self, x: Any) -> int:
        return int(np.argmax(self.proba_one(x)))

    def used_inputs(self) -> np.ndarray | None:
        return np.asarray(np.any(self.weights[0] != 0, axis=0))

    def select_inputs(self, mask: np.ndarray) -> None:
        self._wt[0] = np.ascontiguousarray(self._wt[0][mask])

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        self._wt[0] = np.ascontiguousarray(self._wt[0][perm])

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for i, (w, b) in enumerate(zip(self._wt, self.biases, strict=True)):
            spec, arr = encode_matrix(w, self.precision, f"W{i}", per="column")
            arrays.update(arr)
            arrays[f"b{i}"] = b
            layers.append(spec)
        return {
            "layers": layers,
            "activation": self.activation,
            "out_activation": self.out_activation,
            "dynamic_activations": self.dynamic_activations,
        }, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPHead:
        weights = [decode_matrix(s, arrays, f"W{i}").T for i, s in enumerate(spec["layers"])]
        biases = [arrays[f"b{i}"] for i in range(len(weights))]
        return cls(
            weights, biases, activation=spec["activation"],
            out_activation=spec["out_activation"],
            precision=spec["layers"][0]["precision"],
            dynamic_activations=spec["dynamic_activations"],
        )  # fmt: skip

    def size_components(self) -> dict[str, str]:
        return {"W": "weights", "b": "weights"}


@register_strategy(MLPClassifier)
def _convert_mlp(est: Any, ctx: ConvertContext) -> MLPHead:
    weights, biases = [], []
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        scale = ctx.input_scale if i == 0 else None
        weights.append(prune_weights(np.asarray(w).T, ctx.recipe, center=False, input_scale=scale))
        biases.append(np.asarray(b))
    return MLPHead(
        weights, biases, activation=est.activation, out_activation=est.out_activation_,
        precision=ctx.recipe.precision, dynamic_activations=ctx.recipe.dynamic_activations,
    )  # fmt: skip
