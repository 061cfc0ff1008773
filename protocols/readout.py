"""Shared pieces of the unsupervised-plus-labels protocols (train-cluster, train-hebbian).

Pure tensor code, no chip access: choosing the few labelled samples per class, the delta-rule
read-out, a logistic-regression baseline on raw features, majority labelling of WTA neurons,
and voting by class-response rates over the first k neurons to fire.
"""

from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor


def labelled_subset(y: Tensor, per_class: int, classes: int, gen: torch.Generator) -> Tensor:
    """Indices of ``per_class`` randomly chosen samples of every class (all samples if ``per_class`` is 0).

    A class with fewer samples than asked contributes all of its samples. Sorted, int64.
    """
    if per_class <= 0:
        return torch.arange(len(y))
    chosen = []
    for c in range(classes):
        members = (y == c).nonzero().reshape(-1)
        order = torch.randperm(len(members), generator=gen)
        chosen.append(members[order[:per_class]])
    return torch.cat(chosen).sort().values


def _with_bias(h: Tensor) -> Tensor:
    """Inputs plus a constant 1 column, float64, tiny values flushed to 0 (denormals are slow)."""
    hb = torch.cat([h, torch.ones(len(h), 1)], dim=1).double()
    return torch.where(hb.abs() < 1e-30, torch.zeros_like(hb), hb)


def delta_rule(h: Tensor, y: Tensor, classes: int, *, epochs: int, lr: float, gen: torch.Generator,
               batches: int = 8) -> Tensor:
    """Train a linear read-out ``V`` (classes x features, plus a bias column) with the delta (LMS) rule.

    ``h``: (m, f) inputs of the read-out (cluster outputs), ``y``: (m,) class labels. One-hot
    targets; per mini-batch ``V += lr * (t - V h)^T h / batch``, ``batches`` mini-batches per
    epoch. Returns ``V`` of shape ``(classes, f + 1)``; predict with :func:`readout_predict`.
    """
    hb = _with_bias(h)
    t = torch.nn.functional.one_hot(y, classes).double()
    v = torch.zeros(classes, hb.shape[1], dtype=torch.float64)
    batch = max(1, -(-len(hb) // batches))
    for _ in range(epochs):
        order = torch.randperm(len(hb), generator=gen)
        for b in range(0, len(order), batch):
            i = order[b:b + batch]
            err = t[i] - hb[i] @ v.T
            v += lr * err.T @ hb[i] / len(i)
    return v


def readout_predict(v: Tensor, h: Tensor) -> Tensor:
    """Class predicted by the read-out ``v`` (from :func:`delta_rule`) for inputs ``h`` (m, f)."""
    hb = _with_bias(h)
    return (hb @ v.T).argmax(1)


def logistic_regression_accuracy(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor) -> float:
    """Test accuracy of an L2-regularised (C = 1) multinomial logistic regression on raw features."""
    from sklearn.linear_model import LogisticRegression

    if len(torch.unique(y_train)) < 2:
        return float("nan")
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(x_train.cpu().numpy(), y_train.cpu().numpy())
    return float((model.predict(x_test.cpu().numpy()) == y_test.cpu().numpy()).mean())


def majority_labels(winners: Tensor, y: Tensor, neurons: int, classes: int) -> Tensor:
    """Label of each neuron: the most frequent class among the samples it won (-1 if it won none)."""
    counts = torch.zeros(neurons, classes, dtype=torch.int64)
    ok = winners >= 0
    counts.index_put_((winners[ok], y[ok]), torch.ones(int(ok.sum()), dtype=torch.int64), accumulate=True)
    labels = counts.argmax(1)
    return torch.where(counts.sum(1) > 0, labels, torch.full_like(labels, -1))


def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0



def class_response_rates(top: Tensor, y: Tensor, neurons: int, classes: int) -> Tensor:
    """Class-response rates of WTA neurons, normalised per neuron: (neurons, classes), rows sum to 1.

    ``top``: (m, k) the k first neurons to fire for each of m labelled samples (k = 1: the winner),
    ``y``: (m,) their classes. ``rate[j, c]`` = fraction of class-c samples for which neuron j is among
    the k first (so class sizes do not bias it), then each neuron's row is divided by its sum. A
    neuron that never responds gets a row of zeros.
    """
    rate = torch.zeros(neurons, classes, dtype=torch.float64)
    for c in range(classes):
        members = y == c
        if bool(members.any()):
            rate[:, c] = torch.bincount(top[members].reshape(-1), minlength=neurons).double() / int(members.sum())
    total = rate.sum(1, keepdim=True)
    return torch.where(total > 0, rate / total.clamp(min=1e-300), torch.zeros_like(rate))


def vote_predict(rates: Tensor, top: Tensor) -> Tensor:
    """Class of each sample: the largest sum of the normalised class-response rates of its k first neurons.

    ``rates`` from :func:`class_response_rates`, ``top`` (m, k) neuron indices. Ties: lowest class.
    """
    return rates[top].sum(1).argmax(1)
