"""The synthetic world: a small language whose *true* human preference is known.

Nothing can be downloaded where this kit runs, and a laptop has no GPU, so the default pipeline
trains on a made-up task instead of web text and human labels:

* a word-level language of replies to prompts ``review TOPIC``, ``advise TOPIC`` and
  ``describe TOPIC``, produced by a probabilistic grammar of sentence templates;
* a *mixed-quality* "web" corpus (off-task, off-topic, hedging, filler, stutter, padding and
  ungrammatical replies among good ones) that plays the role of pretraining data, and a
  *curated* set of high-utility replies that plays the role of SFT demonstrations;
* a hand-written **gold utility** ``r*(prompt, response)``, the stand-in for true human
  preference, made of named, interpretable parts (:func:`gold_breakdown`);
* a **simulated annotator** that labels pairs by Bradley-Terry sampling from ``r*``:
  ``P(y1 > y2) = sigmoid(r*(y1) - r*(y2))`` (:func:`annotate`).

The gold utility reads *text* (space-separated words), so it scores the output of any model
with any tokenizer. Everything is deterministic given a seed.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# 1. Vocabulary
# --------------------------------------------------------------------------------------------
PAD, BOS, EOS, SEP, UNK = "<pad>", "<bos>", "<eos>", "<sep>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, SEP, UNK]

TASKS = ["review", "advise", "describe"]

# 16 topics, each with 3 aspects (all distinct words).
TOPICS: dict[str, list[str]] = {
    "car": ["engine", "brakes", "seats"],
    "phone": ["battery", "screen", "camera"],
    "hotel": ["room", "staff", "breakfast"],
    "pizza": ["crust", "sauce", "cheese"],
    "laptop": ["keyboard", "trackpad", "fan"],
    "movie": ["plot", "actors", "soundtrack"],
    "bike": ["gears", "saddle", "frame"],
    "cafe": ["coffee", "pastries", "barista"],
    "book": ["chapters", "characters", "ending"],
    "garden": ["roses", "lawn", "soil"],
    "camera": ["lens", "shutter", "sensor"],
    "tent": ["zipper", "poles", "floor"],
    "watch": ["strap", "dial", "clasp"],
    "printer": ["ink", "tray", "cable"],
    "sofa": ["cushions", "fabric", "legs"],
    "guitar": ["strings", "neck", "tuners"],
}
# "camera" is both a topic and a phone aspect; keep the topic and rename the aspect.
TOPICS["phone"] = ["battery", "display", "speaker"]

POSITIVE = ["great", "excellent", "superb", "lovely", "solid", "reliable", "fantastic",
            "wonderful", "pleasant", "impressive"]
NEGATIVE = ["bad", "poor", "awful", "weak", "flimsy", "cheap"]
INTENSIFIERS = ["very", "really", "truly", "quite"]
HEDGES = ["maybe", "perhaps", "possibly", "arguably"]
ADVICE_VERBS = ["check", "compare", "clean", "test", "inspect", "upgrade", "replace", "adjust"]
FILLERS = ["um", "basically", "literally", "anyway", "whatever"]
FUNCTION_WORDS = ["the", "a", "is", "are", "and", "it", "has", "you", "should", "first",
                  "this", "of", "also", "its", "i", "like", "with", "then", "."]

ASPECT_TOPIC = {aspect: topic for topic, aspects in TOPICS.items() for aspect in aspects}
NOUNS = set(TOPICS) | set(ASPECT_TOPIC)


def vocabulary() -> list[str]:
    """All words of the world, special tokens first, in a fixed order (the token ids)."""
    words = SPECIAL_TOKENS + TASKS + list(TOPICS)
    words += [a for aspects in TOPICS.values() for a in aspects]
    words += POSITIVE + NEGATIVE + INTENSIFIERS + HEDGES + ADVICE_VERBS + FILLERS + FUNCTION_WORDS
    seen: set[str] = set()
    unique = [w for w in words if not (w in seen or seen.add(w))]
    return unique


# --------------------------------------------------------------------------------------------
# 2. Grammar: sentence templates over word classes
# --------------------------------------------------------------------------------------------
# Slots: T = the prompt topic (or another), A = an aspect, P = positive adj, N = negative adj,
# J = any adjective (P or N by the reply's positivity), I = intensifier, V = advice verb,
# H = hedge. Every other symbol is a literal word.
TEMPLATES: dict[str, list[str]] = {
    "review": ["the A is J .", "the A is I J .", "the T is J .", "it has a J A .",
               "the A of the T is J .", "i like the A .", "this T has J A and J A .",
               "the A and the A are J ."],
    "advise": ["you should V the A .", "V the A first .", "you should V the A and the A .",
               "then V its A .", "you should also V the A ."],
    "describe": ["the T has a A .", "it has a A and a A .", "its A is J .",
                 "this T has a A with a A .", "the A is J ."],
}
HEDGED = "H the A is J ."   # a hedged sentence, allowed anywhere in a reply

_CLASS_OF_SLOT = {"T": "NOUN", "A": "NOUN", "P": "ADJ", "N": "ADJ", "J": "ADJ",
                  "I": "INT", "V": "VERB", "H": "HEDGE"}


def word_class(word: str) -> str:
    """The grammatical class of a word, used by the bigram check of the gold utility."""
    if word in NOUNS:
        return "NOUN"
    if word in POSITIVE or word in NEGATIVE:
        return "ADJ"
    for cls, words in (("INT", INTENSIFIERS), ("VERB", ADVICE_VERBS), ("HEDGE", HEDGES),
                       ("FILLER", FILLERS), ("TASK", TASKS)):
        if word in words:
            return cls
    if word == EOS:
        return "EOS"
    return word  # function words are their own class


def _template_classes(template: str) -> list[str]:
    return [_CLASS_OF_SLOT.get(sym, sym) for sym in template.split()]


def _allowed_bigrams() -> frozenset[tuple[str, str]]:
    """Every class bigram that some sequence of templates can produce (so the check is exact)."""
    templates = [t for ts in TEMPLATES.values() for t in ts] + [HEDGED]
    pairs: set[tuple[str, str]] = set()
    starts = set()
    for t in templates:
        classes = _template_classes(t)
        pairs.update(zip(classes, classes[1:]))
        starts.add(classes[0])
    pairs.update((".", s) for s in starts)   # sentence after sentence
    pairs.add((".", "EOS"))
    pairs.update(("START", s) for s in starts)
    return frozenset(pairs)


ALLOWED_BIGRAMS = _allowed_bigrams()


# --------------------------------------------------------------------------------------------
# 3. Prompts and replies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """A prompt ``<bos> TASK TOPIC <sep>``."""
    task: str
    topic: str

    @property
    def text(self) -> str:
        return f"{self.task} {self.topic}"


def all_prompts() -> list[Prompt]:
    """The 48 prompts of the world (3 tasks x 16 topics), in a fixed order."""
    return [Prompt(task, topic) for task in TASKS for topic in TOPICS]


def parse_prompt(text: str) -> Prompt:
    """Inverse of ``Prompt.text``; ignores special tokens. Raises ValueError on bad text."""
    words = [w for w in text.split() if w not in SPECIAL_TOKENS]
    if len(words) != 2 or words[0] not in TASKS or words[1] not in TOPICS:
        raise ValueError(f"prompt must read 'TASK TOPIC' with TASK in {TASKS}, got {text!r}")
    return Prompt(words[0], words[1])


@dataclass(frozen=True)
class Style:
    """How a reply is written: probabilities that shape one sampled reply.

    ``on_task``: P(templates of the prompt's task); ``on_topic``: P(each noun is about the prompt's
    topic); ``positivity``: P(an adjective is positive); ``hedging``: P(a sentence is hedged);
    ``max_sentences``: replies have 1..max_sentences sentences.
    """
    on_task: float
    on_topic: float
    positivity: float
    hedging: float
    max_sentences: int


CURATED_STYLE = Style(on_task=0.95, on_topic=0.95, positivity=0.9, hedging=0.03, max_sentences=3)


def random_style(rng: random.Random) -> Style:
    """A style drawn for one 'web' reply: from careful to careless."""
    return Style(on_task=rng.uniform(0.0, 1.0), on_topic=rng.uniform(0.0, 1.0),
                 positivity=rng.uniform(0.0, 1.0), hedging=rng.uniform(0.0, 0.6),
                 max_sentences=rng.randint(1, 5))


def _fill(template: str, prompt: Prompt, style: Style, rng: random.Random) -> list[str]:
    words = []
    for sym in template.split():
        topic = prompt.topic if rng.random() < style.on_topic else rng.choice(list(TOPICS))
        if sym == "T":
            words.append(topic)
        elif sym == "A":
            words.append(rng.choice(TOPICS[topic]))
        elif sym == "J":
            words.append(rng.choice(POSITIVE if rng.random() < style.positivity else NEGATIVE))
        else:
            pool = {"I": INTENSIFIERS, "V": ADVICE_VERBS, "H": HEDGES}.get(sym)
            words.append(rng.choice(pool) if pool else sym)
    return words


def sample_reply(prompt: Prompt, style: Style, rng: random.Random) -> list[str]:
    """One reply (a list of words, without ``<eos>``) to ``prompt`` written in ``style``."""
    n_sentences = rng.randint(1, style.max_sentences)
    words: list[str] = []
    for _ in range(n_sentences):
        task = prompt.task if rng.random() < style.on_task else rng.choice(TASKS)
        template = HEDGED if rng.random() < style.hedging else rng.choice(TEMPLATES[task])
        words += _fill(template, prompt, style, rng)
    return words


def corrupt(words: list[str], rng: random.Random) -> list[str]:
    """Apply one random corruption of web text: stutter, filler, stray hedge, swap,
    tail-repeat padding or a dropped word."""
    words = list(words)
    i = rng.randrange(len(words))
    kind = rng.choice(["stutter", "filler", "hedge", "swap", "pad", "drop"])
    if kind == "stutter":
        words.insert(i, words[i])
    elif kind == "filler":
        words.insert(i, rng.choice(FILLERS))
    elif kind == "hedge":
        words.insert(i, rng.choice(HEDGES))
    elif kind == "swap" and len(words) > 1:
        j = min(i, len(words) - 2)
        words[j], words[j + 1] = words[j + 1], words[j]
    elif kind == "pad":
        tail = words[-rng.randint(2, 4):]
        words += tail * rng.randint(1, 3)
    elif kind == "drop" and len(words) > 1:
        del words[i]
    return words


def web_reply(prompt: Prompt, rng: random.Random, corruption_rate: float = 0.35) -> list[str]:
    """A reply from the mixed-quality 'web': a random style; with probability 35 % it is
    corrupted one to three times."""
    words = sample_reply(prompt, random_style(rng), rng)
    if rng.random() < corruption_rate:
        for _ in range(rng.randint(1, 3)):
            words = corrupt(words, rng)
    return words


# --------------------------------------------------------------------------------------------
# 4. Gold utility: the stand-in for true human preference
# --------------------------------------------------------------------------------------------
IDEAL_LENGTH = (6, 16)   # response words, <eos> not counted


def _split(response: str) -> tuple[list[str], bool]:
    """Words of a response and whether it ended with <eos>; text after <eos> is ignored."""
    words = [w for w in response.split() if w != PAD]
    if EOS in words:
        return words[:words.index(EOS)], True
    return words, False


def _saturating(q: float, scale: float = 2.0) -> float:
    return 2.0 * (1.0 - math.exp(-q / scale))


def gold_breakdown(prompt: Prompt | str, response: str) -> dict[str, float]:
    """Every named part of the gold utility ``r*(x, y)``; :func:`gold_utility` is their sum.

    ``response`` is text: words separated by spaces, ended by ``<eos>`` (anything after the first
    ``<eos>`` is ignored). Parts:

    ==================  ====================================================================
    topic               +1 if the prompt's topic or one of its aspects is mentioned
    aspects             distinct on-topic aspects, diminishing: 0.6, 0.9, 1.05 for 1, 2, 3
    off_topic           -0.7 per noun of another topic
    task_quality        2 (1 - e^{-q/2}); q = positive adjectives (review), advice verbs
                        (advise) or distinct aspects (describe)
    negativity          -0.3 per negative adjective in a review
    length              -0.3 per word short of 6, -0.15 per word beyond 16
    repetition          -0.6 per repeated content word (noun, adjective, verb)
    grammar             -1 per impossible word-class bigram (fillers are skipped here)
    hedging             -0.1 for the first hedge, -0.5 for each further one
    filler              -0.6 per filler word
    eos                 -1 if the response never ends with <eos>
    ==================  ====================================================================
    """
    prompt = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    words, ended = _split(response)
    own = set(TOPICS[prompt.topic])
    nouns = [w for w in words if w in NOUNS]
    aspects = {w for w in nouns if w in own}
    content = [w for w in words if w in NOUNS or word_class(w) in ("ADJ", "VERB")]
    hedges = sum(w in HEDGES for w in words)
    n = len(words)

    quality = {"review": sum(w in POSITIVE for w in words),
               "advise": sum(w in ADVICE_VERBS for w in words),
               "describe": len(aspects)}[prompt.task]
    classes = ["START"] + [word_class(w) for w in words if w not in FILLERS]
    bad_bigrams = sum(pair not in ALLOWED_BIGRAMS for pair in zip(classes, classes[1:]))
    lo, hi = IDEAL_LENGTH
    return {
        "topic": 1.0 if (prompt.topic in words or aspects) else 0.0,
        "aspects": sum(0.6 * 0.5 ** k for k in range(len(aspects))),
        "off_topic": -0.7 * sum(w != prompt.topic and w not in own for w in nouns),
        "task_quality": _saturating(quality),
        "negativity": -0.3 * sum(w in NEGATIVE for w in words) if prompt.task == "review" else 0.0,
        "length": -0.3 * max(0, lo - n) - 0.15 * max(0, n - hi),
        "repetition": -0.6 * (len(content) - len(set(content))),
        "grammar": -1.0 * bad_bigrams,
        "hedging": -(0.1 + 0.5 * (hedges - 1)) if hedges else 0.0,
        "filler": -0.6 * sum(w in FILLERS for w in words),
        "eos": 0.0 if ended else -1.0,
    }


def gold_utility(prompt: Prompt | str, response: str) -> float:
    """The gold utility ``r*(x, y)``: the sum of :func:`gold_breakdown`'s parts."""
    return sum(gold_breakdown(prompt, response).values())


def gold_utilities(prompts, responses) -> list[float]:
    """:func:`gold_utility` of each (prompt, response) pair."""
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have the same length, got "
                         f"{len(prompts)} and {len(responses)}")
    return [gold_utility(p, r) for p, r in zip(prompts, responses)]


def mean_breakdown(prompts, responses) -> dict[str, float]:
    """The mean of each :func:`gold_breakdown` part over (prompt, response) pairs: what a policy's
    replies win and lose, part by part. The parts' means sum to the mean gold utility.

    >>> p = all_prompts()[0]
    >>> parts = mean_breakdown([p, p], [f"the {p.topic} is great . <eos>", "<eos>"])
    >>> round(parts["eos"], 2), round(parts["length"], 2)
    (0.0, -1.05)
    """
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"prompts and responses must be non-empty and of the same length, got "
                         f"{len(prompts)} and {len(responses)}")
    rows = [gold_breakdown(p, r) for p, r in zip(prompts, responses)]
    return {k: sum(row[k] for row in rows) / len(rows) for k in rows[0]}


# --------------------------------------------------------------------------------------------
# 5. The simulated annotator
# --------------------------------------------------------------------------------------------
def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


ANNOTATORS = ("bradley_terry", "deterministic")


def annotate(prompts, responses_1, responses_2, seed: int,
             annotator: str = "bradley_terry", sharpness: float = 1.0) -> list[int]:
    """Simulated human labels: 1 where the annotator prefers ``responses_1[i]``, else 0.

    ``"bradley_terry"``: sampled from the gold utility, ``P(y1 > y2 | x) = sigmoid(s · (r*(x,y1) -
    r*(x,y2)))`` with ``s = sharpness``, a noisy human (``s = 1``: the course's annotator; a
    larger ``s``: a more consistent labeller; InstructGPT's labellers agreed with each other on
    about 73 % of comparisons, Ouyang et al. 2022). ``"deterministic"``: the reply with the higher gold utility, a fair coin on ties
    (Gao et al. 2023 labelled this way with their gold reward model). The same seed gives the
    same labels.
    """
    if annotator not in ANNOTATORS:
        raise ValueError(f"annotator must be one of {ANNOTATORS}, got {annotator!r}")
    if not (isinstance(sharpness, (int, float)) and sharpness > 0 and math.isfinite(sharpness)):
        raise ValueError(f"sharpness must be a finite number > 0, got {sharpness!r}")
    if not (len(prompts) == len(responses_1) == len(responses_2)):
        raise ValueError(f"annotate needs as many prompts as pairs: got prompts={len(prompts)}, "
                         f"responses_1={len(responses_1)}, responses_2={len(responses_2)}")
    rng = random.Random(seed)
    labels = []
    for x, y1, y2 in zip(prompts, responses_1, responses_2):
        gap = gold_utility(x, y1) - gold_utility(x, y2)
        p_first = (_sigmoid(sharpness * gap) if annotator == "bradley_terry"
                   else float(gap > 0) + 0.5 * (gap == 0))
        labels.append(int(rng.random() < p_first))
    return labels


def bayes_ceiling(gold_1, gold_2) -> float:
    """Best achievable expected pairwise accuracy against the annotator: ``E[sigmoid(|Δr*|)]``.

    Even a reward model that knows ``r*`` exactly agrees with a noisy Bradley-Terry annotator only
    this often, because the annotator itself picks the worse reply with probability
    ``sigmoid(-|Δr*|)``.
    """
    if len(gold_1) != len(gold_2) or len(gold_1) == 0:
        raise ValueError(f"gold_1 and gold_2 must be non-empty and of equal length, got "
                         f"{len(gold_1)} and {len(gold_2)}")
    return sum(_sigmoid(abs(a - b)) for a, b in zip(gold_1, gold_2)) / len(gold_1)
