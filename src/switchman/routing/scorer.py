"""The learned answer scorer of the cascade (FrugalGPT-style): the chance that a model's answer
to a prompt is right, read from the prompt, the answer, and whether it agrees with the answers
already bought from cheaper models (agreement between independent models is the strongest cheap
sign that an answer is right, as AutoMix and answer-consistency cascades found).

Logistic regressions over prompt TF-IDF and shape, answer TF-IDF and shape (an empty or rambling
answer shows in its length), the agreement flags, and what the answer shows of itself
(:mod:`.answers`: whether it states calculations, whether one is wrong, whether it marks a final
answer; on GSM8K these took the cascade from 36% to 16% strong-model calls for half the quality
gap): one per model of the training data, since
what a model gets right depends on the kind of prompt (on routerbench-3task one scorer for all
models with a per-model offset needed 67% of gpt-4's cost to reach 95% of its quality, one per
model 49%), and one over every model's answers for models the scorer never saw, so a gateway
cascade may use models with other names.

Saved as one ``.npz`` (see :mod:`.files`): numpy at run time, trained by :func:`train_scorer`
in :mod:`.training` (``switchman train --scorer``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .answers import calculations, has_final_answer
from .features import FeatureParams, Vectorizer
from .files import ModelFileError, load_npz, save_npz

FORMAT = "switchman-scorer"
VERSION = 2  # 2: the answer's own flags (calculations, final answer) joined the agreement flags
AGREEMENT = ("has_earlier", "agree_share", "all_agree", "none_agree", "empty")
CHECKS = ("calc_checked", "calc_wrong", "final_answer")  # read off the answer (:mod:`.answers`)
FLAGS = AGREEMENT + CHECKS
_NONWORD = re.compile(r"\W+")


class ScorerFileError(ModelFileError):
    """A scorer file that is missing, of another format, or damaged."""


def normalise(answer: str | None) -> str:
    """An answer reduced for comparison: case, punctuation, escaped newlines and space gone."""
    if not answer:
        return ""
    return _NONWORD.sub(" ", answer.replace("\\n", " ").lower()).strip()[:300]


def agreement(answer: str | None, earlier: Sequence[str | None]) -> np.ndarray:
    """The :data:`AGREEMENT` flags of ``answer`` against the ``earlier`` answers."""
    mine = normalise(answer)
    same = [mine != "" and normalise(e) == mine for e in earlier]
    n = len(same)
    k = sum(same)
    return np.array([float(n > 0), k / n if n else 0.0, float(n > 0 and k == n), float(n > 0 and k == 0), float(mine == "")])


def flags(answer: str | None, earlier: Sequence[str | None]) -> np.ndarray:
    """The :data:`FLAGS` of ``answer``: its agreement with ``earlier`` answers, then whether it
    states calculations, whether one of them is wrong, and whether it marks a final answer."""
    checked, wrong = calculations(answer or "")
    return np.concatenate([agreement(answer, earlier),
                           [float(checked > 0), float(wrong > 0), float(has_final_answer(answer or ""))]])


@dataclass
class AnswerScorer:
    """``score(prompt, answer, earlier, model)``: the probability that ``answer`` is right."""

    prompts: Vectorizer
    answers: Vectorizer
    weights: np.ndarray  # (prompt columns + answer columns + FLAGS, models + 1): the last for any other model
    bias: np.ndarray  # (models + 1,)
    models: list[str]  # the models with a scorer of their own
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._answer_at = len(self.prompts)
        self._agree_at = self._answer_at + len(self.answers)
        self._column = {m: k for k, m in enumerate(self.models)}

    @property
    def n_features(self) -> int:
        return self._agree_at + len(FLAGS)

    def features(self, prompt: str, answer: str | None, earlier: Sequence[str | None] = ()) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` of the scorer's sparse feature vector."""
        pi, pv = self.prompts.transform_one(prompt)
        ai, av = self.answers.transform_one(answer or "")
        idx = np.concatenate([pi, ai + self._answer_at, np.arange(self._agree_at, self.n_features)])
        return idx, np.concatenate([pv, av, flags(answer, earlier)])

    def score(self, prompt: str, answer: str | None, earlier: Sequence[str | None] = (), model: str | None = None) -> float:
        """The probability that ``answer`` (by ``model``: its own scorer if it has one, else
        the one for every model) answers ``prompt`` rightly, given the ``earlier`` answers of
        cheaper models to the same prompt."""
        k = self._column.get(model, len(self.models)) if model is not None else len(self.models)
        idx, val = self.features(prompt, answer, earlier)
        z = float(val @ self.weights[idx, k]) + float(self.bias[k])
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    # -- file ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            version=VERSION,
            models=self.models,
            prompt_features=self.prompts.params.to_dict(),
            answer_features=self.answers.params.to_dict(),
        )
        arrays = {**self.prompts.arrays("prompt_"), **self.answers.arrays("answer_")}
        save_npz(path, meta, dict(arrays, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float64)))

    @classmethod
    def load(cls, path: str | Path) -> "AnswerScorer":
        meta, z = load_npz(path, FORMAT, VERSION, "answer scorer", ScorerFileError)
        try:
            out = cls(
                prompts=Vectorizer.from_arrays(z, FeatureParams.from_dict(meta["prompt_features"]), "prompt_"),
                answers=Vectorizer.from_arrays(z, FeatureParams.from_dict(meta["answer_features"]), "answer_"),
                weights=z["weights"],
                bias=z["bias"],
                models=list(meta["models"]),
                meta=meta,
            )
        except KeyError as e:
            raise ScorerFileError(f"{path}: answer scorer file lacks {e}") from None
        if out.weights.shape != (out.n_features, len(out.models) + 1) or out.bias.shape != (len(out.models) + 1,):
            raise ScorerFileError(f"{path}: damaged answer scorer file (weights {out.weights.shape} for {out.n_features} features)")
        return out
