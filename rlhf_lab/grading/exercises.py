"""Every graded exercise of the course: which notebook asks for it and what it is worth."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Exercise", "EXERCISES", "by_name", "NOTEBOOKS"]


@dataclass(frozen=True)
class Exercise:
    name: str        # the function the student writes (the name defined in the exercise cell)
    notebook: str    # the notebook's file name, e.g. "01_sft.ipynb"
    points: int = 1  # earned only when every hidden test of the exercise passes


EXERCISES: tuple[Exercise, ...] = (
    Exercise("response_logprob", "00_world_and_base_model.ipynb", 2),
    Exercise("sft_loss", "01_sft.ipynb", 2),
    Exercise("bt_probability", "02_reward_model.ipynb", 1),
    Exercise("bradley_terry_loss", "02_reward_model.ipynb", 2),
    Exercise("plackett_luce_loss", "02_reward_model.ipynb", 3),
    Exercise("fit_bradley_terry", "02_reward_model.ipynb", 2),
    Exercise("boltzmann_policy", "03_closed_form.ipynb", 2),
    Exercise("optimal_objective", "03_closed_form.ipynb", 1),
    Exercise("kl_optimal", "03_closed_form.ipynb", 1),
    Exercise("importance_estimates", "03_closed_form.ipynb", 3),
    Exercise("kl_k1", "04_ppo.ipynb", 1),
    Exercise("kl_k3", "04_ppo.ipynb", 1),
    Exercise("shaped_rewards", "04_ppo.ipynb", 2),
    Exercise("gae", "04_ppo.ipynb", 3),
    Exercise("ppo_clip_loss", "04_ppo.ipynb", 2),
    Exercise("value_loss", "04_ppo.ipynb", 2),
    Exercise("kl_best_of_n", "06_overoptimisation.ipynb", 1),
    Exercise("fit_bon", "06_overoptimisation.ipynb", 1),
    Exercise("fit_rl", "06_overoptimisation.ipynb", 1),
    Exercise("aggregate_ensemble", "06_overoptimisation.ipynb", 2),
    Exercise("dpo_loss", "07_beyond_rlhf.ipynb", 2),
    Exercise("group_advantages", "07_beyond_rlhf.ipynb", 2),
    Exercise("ppo_ptx_loss", "07_beyond_rlhf.ipynb", 2),
)

NOTEBOOKS: tuple[str, ...] = tuple(dict.fromkeys(e.notebook for e in EXERCISES))


def by_name(name: str) -> Exercise:
    for exercise in EXERCISES:
        if exercise.name == name:
            return exercise
    raise KeyError(f"no exercise named {name!r}; known: {[e.name for e in EXERCISES]}")
