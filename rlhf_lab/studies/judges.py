"""Judges that label preference pairs: a readable constitution over the world's words, a learned
judge (reward models fit on a few human labels) and the simulated human annotator; and how
often two labellings agree. Used by :mod:`rlhf_lab.studies.feedback`."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

import torch

from rlhf_lab import world
from rlhf_lab.core.config import require
from rlhf_lab.lm import models
from rlhf_lab.stages.reward_model import score_texts

__all__ = ['Rule', 'rule_scores', 'Constitution', 'LearnedJudge', 'SimulatedAnnotator', 'label_pairs', 'gold_better', 'agreement']


# --------------------------------------------------------------------------------------------
# 1. The constitution: rules computed from the words of a reply
# --------------------------------------------------------------------------------------------
def _own_nouns(prompt: world.Prompt) -> set[str]:
    return {prompt.topic, *world.TOPICS[prompt.topic]}


def _task_words(prompt: world.Prompt, words: list[str]) -> int:
    """What the task asks for: praise (review), advice verbs (advise), distinct parts (describe)."""
    if prompt.task == "review":
        return sum(w in world.POSITIVE for w in words)
    if prompt.task == "advise":
        return sum(w in world.ADVICE_VERBS for w in words)
    return len({w for w in words if w in world.TOPICS[prompt.topic]})


def _content(words: list[str]) -> list[str]:
    return [w for w in words if w in world.NOUNS or world.word_class(w) in ("ADJ", "VERB")]


@dataclass(frozen=True)
class Rule:
    """One principle: its name, the sentence a reader sees, and its score(prompt, words, ended)."""
    name: str
    text: str
    score: Callable


RULES = (
    Rule("topic", "Mention the prompt's topic or one of its parts.",
         lambda p, w, e: float(bool(_own_nouns(p) & set(w)))),
    Rule("stay_on_topic", "Name nothing that belongs to another topic.",
         lambda p, w, e: float(-sum(x in world.NOUNS and x not in _own_nouns(p) for x in w))),
    Rule("do_the_task", "Do what was asked: praise in a review, advise, or describe parts "
         "(up to three count).", lambda p, w, e: float(min(3, _task_words(p, w)))),
    Rule("no_hedging", "Do not hedge.", lambda p, w, e: float(-sum(x in world.HEDGES for x in w))),
    Rule("no_filler", "No filler words.", lambda p, w, e: float(-sum(x in world.FILLERS for x in w))),
    Rule("no_repetition", "Do not repeat a content word.",
         lambda p, w, e: float(len(set(_content(w))) - len(_content(w)))),
    Rule("finish", "End the reply.", lambda p, w, e: 0.0 if e else -1.0),
    Rule("length", "Say it in 6 to 16 words.",
         lambda p, w, e: 0.0 if world.IDEAL_LENGTH[0] <= len(w) <= world.IDEAL_LENGTH[1] else -1.0),
)


RULE_NAMES = tuple(r.name for r in RULES)


def _words(reply: str) -> tuple[list[str], bool]:
    """The reply's words up to its first <eos>, and whether there was one."""
    words = [w for w in reply.split() if w != world.PAD]
    if world.EOS in words:
        return words[:words.index(world.EOS)], True
    return words, False


def rule_scores(prompt, reply: str, rules=RULES) -> dict[str, float]:
    """Every rule's score of one reply: ``{rule name: score}``. Reads the text only."""
    prompt = world.parse_prompt(prompt) if isinstance(prompt, str) else prompt
    words, ended = _words(reply)
    return {rule.name: rule.score(prompt, words, ended) for rule in rules}


@dataclass(frozen=True)
class Constitution:
    """A judge that scores a reply by the sum of its rules: ``c(x, y) = Σ_rules score(x, y)``."""
    rules: tuple = RULE_NAMES
    """Names of the rules in force (a subset of :data:`RULES`)."""

    def __post_init__(self):
        unknown = [r for r in self.rules if r not in RULE_NAMES]
        require(len(self.rules) > 0 and not unknown, "rules",
                f"must be a non-empty subset of {RULE_NAMES}, got unknown {unknown}")

    def without(self, *names: str) -> "Constitution":
        """The same constitution with the rules ``names`` left out."""
        return Constitution(tuple(r for r in self.rules if r not in names))

    def scores(self, prompts, replies) -> list[float]:
        rules = [r for r in RULES if r.name in self.rules]
        return [sum(rule_scores(p, y, rules).values()) for p, y in zip(prompts, replies)]


@dataclass
class LearnedJudge:
    """A judge that scores with reward models fit on human labels: the members' mean score.

    With ``sample`` (the default) it labels as its Bradley-Terry model says a human would,
    ``P(first) = σ(s(first) − s(second))``, so its labels keep the annotator's scale; without,
    it always picks the higher score, and an RM fit on such certain labels learns far larger
    reward gaps (at a fixed β, PPO then runs much further)."""
    members: list
    max_response_len: int = 24
    sample: bool = True

    def scores(self, prompts, replies) -> list[float]:
        tok = models.world_tokenizer()
        per_member = [score_texts(rm, tok, prompts, replies, self.max_response_len)
                      for rm in self.members]
        return torch.stack(per_member).mean(0).tolist()


class SimulatedAnnotator:
    """The simulated human: Bradley-Terry sampling from the gold utility (:func:`world.annotate`)."""


# --------------------------------------------------------------------------------------------
# 2. Labels and agreement
# --------------------------------------------------------------------------------------------
def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def label_pairs(judge, prompts, first, second, seed: int) -> list[int]:
    """1 where ``judge`` prefers ``first[i]``, else 0. A scoring judge prefers the higher score,
    a tie goes to a coin of a ``random.Random`` seeded by ``seed``; a sampling
    :class:`LearnedJudge` draws ``P(first) = σ(s(first) − s(second))`` from the same coin, and the
    :class:`SimulatedAnnotator` draws ``P(first) = σ(r*(first) − r*(second))``."""
    if not len(prompts) == len(first) == len(second):
        raise ValueError(f"label_pairs needs as many prompts as pairs: got prompts={len(prompts)}, "
                         f"first={len(first)}, second={len(second)}")
    if isinstance(judge, SimulatedAnnotator):
        return world.annotate(prompts, first, second, seed=seed)
    s1, s2 = judge.scores(prompts, first), judge.scores(prompts, second)
    coin = random.Random(f"judge-ties-{seed}")
    if isinstance(judge, LearnedJudge) and judge.sample:
        return [int(coin.random() < _sigmoid(a - b)) for a, b in zip(s1, s2)]
    return [1 if a > b else 0 if a < b else int(coin.random() < 0.5) for a, b in zip(s1, s2)]


def gold_better(prompts, first, second) -> list[int | None]:
    """1 where ``first`` has the higher gold utility, 0 where ``second`` has, None on a tie."""
    g1, g2 = world.gold_utilities(prompts, first), world.gold_utilities(prompts, second)
    return [None if a == b else int(a > b) for a, b in zip(g1, g2)]


def agreement(labels, reference) -> float:
    """The fraction of pairs where ``labels`` equals ``reference`` (pairs where the reference is
    None are skipped)."""
    kept = [(a, b) for a, b in zip(labels, reference) if b is not None]
    require(len(kept) > 0, "reference", "has no pair to compare")
    return sum(a == b for a, b in kept) / len(kept)
