"""The least slot-bias error that a given number of groups allows: a Cramer-Rao bound.

The ranking bench reports the largest error of the three fitted slot biases of groups of 4
(slots 2 to 4, each relative to slot 1). How small can that be for a given number of calls? This
script computes the Fisher information that one answer about a group of 4 carries about the three
biases when the comparator is the bench's (Plackett-Luce, first slot favoured by 0.3), for both
answers the bench asks for: a full ranking (three stages) and the best of 4 (the first stage
alone). Three bounds for each:

- known scores, random groups: generously, every item score is known exactly, and the four true
  scores of a group are drawn like the bench's (normal, standard deviation 1.65 on the model's
  scale, which is what a pair accuracy of 0.80 gives);
- known scores, equal utilities: every group's four utilities equal, so each stage is a fair
  draw. For full rankings this is the most informative group we know of: a numerical search
  over other score configurations found none better by more than 0.3% in variance (for the best
  of 4 it was not searched);
- unknown scores, random groups: what the fit faces. N = 2,000 items in random partitions into
  groups of 4, as many as the budget allows, with slots balanced the way the planner balances
  them; the information about all N scores and the three biases together, plus the scores' prior
  (the truth's spread, 1.65), and the biases' part of its inverse (the scores eliminated by a
  Schur complement). This is the Bayesian (van Trees) form of the bound, so it holds for biased
  estimators such as the fit's posterior mode too. Mean of 3 draws of scores and groups.

The bound is the inverse of the total information; the expected largest absolute error of the
three is estimated by drawing errors from that normal.

Usage: python scripts/slot_bias_bound.py   (N = 2,000 at 1 to 4 calls per image, i.e. 2,000 to
8,000 groups, for both answers; about 20 s)
"""

import itertools
import numpy as np

SLOT_BIAS = np.array([0.3, 0.0, 0.0, 0.0])
SCORE_SD = 1.65
DRAWS = 200_000
N = 2_000
DESIGN_DRAWS = 3


def utility_information(utilities: np.ndarray, stages: int) -> np.ndarray:
    """Fisher information of one answer about a group of 4 about its four slot utilities, per
    group: a full ranking (`stages` 3) or the best of the group (`stages` 1).

    `utilities` is (groups, 4): score + bias of the item in each slot. For each way the answer
    can come out (24 orders, or 4 winners), the score function of the Plackett-Luce likelihood
    is summed over its stages (winner indicator minus choice probability); the information is
    the probability-weighted outer product. Returns (groups, 4, 4).
    """
    total = np.zeros((len(utilities), 4, 4))
    outcomes = itertools.permutations(range(4)) if stages == 3 else ((w,) for w in range(4))
    for order in outcomes:
        remaining = list(range(4))
        log_p = np.zeros(len(utilities))
        score = np.zeros((len(utilities), 4))
        for winner in order[:stages]:
            u = utilities[:, remaining]
            p = np.exp(u - u.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            log_p += np.log(p[:, remaining.index(winner)])
            score[:, winner] += 1.0
            score[:, remaining] -= p
            remaining.remove(winner)
        total += np.exp(log_p)[:, None, None] * score[:, :, None] * score[:, None, :]
    return total


def information(utilities: np.ndarray, stages: int) -> np.ndarray:
    """Mean information about the biases of slots 2..4 per group, the scores known."""
    return utility_information(utilities, stages)[:, 1:, 1:].mean(0)


def balanced_partitions(rounds: int, rng: np.random.Generator) -> np.ndarray:
    """`rounds` random partitions of N items into groups of 4, each group's slots ordered so that
    its items take the slots they have been shown in least (as the planner does)."""
    counts = np.zeros((N, 4), dtype=int)
    orders = [list(p) for p in itertools.permutations(range(4))]
    groups = []
    for _ in range(rounds):
        for members in rng.permutation(N).reshape(-1, 4):
            best = min(orders, key=lambda o: counts[members[o], range(4)].sum())
            group = members[best]
            counts[group, range(4)] += 1
            groups.append(group)
    return np.array(groups)


def unknown_scores_covariance(groups: np.ndarray, scores: np.ndarray, stages: int) -> np.ndarray:
    """The bound on the biases' covariance when the N scores are estimated with them.

    Parameters: the N scores, then the biases of slots 2..4 (slot 1's is the reference). The
    utility of slot j is its item's score plus the slot's bias, so each group's 4 x 4 utility
    information adds into the rows and columns of its items and of slots 2..4.
    """
    info = utility_information(scores[groups] + SLOT_BIAS, stages)

    def parameters_of_slot(j: int) -> list:
        """The parameters that the utility of slot j adds: its item's score, and its bias."""
        bias = [np.full(len(groups), N + j - 1)] if j > 0 else []
        return [groups[:, j], *bias]

    joint = np.zeros((N + 3, N + 3))
    for j in range(4):
        for k in range(4):
            for a in parameters_of_slot(j):
                for b in parameters_of_slot(k):
                    np.add.at(joint, (a, b), info[:, j, k])
    joint[range(N), range(N)] += 1.0 / SCORE_SD**2
    scores_block, cross, bias_block = joint[:N, :N], joint[:N, N:], joint[N:, N:]
    return np.linalg.inv(bias_block - cross.T @ np.linalg.solve(scores_block, cross))


def expected_largest_error(cov: np.ndarray, rng: np.random.Generator) -> float:
    errors = rng.multivariate_normal(np.zeros(3), cov, size=DRAWS)
    return float(np.abs(errors).max(1).mean())


def main() -> None:
    print(
        "| answer | groups of 4 | calls/image at N = 2,000 | known scores, random groups "
        "| known scores, equal utilities | unknown scores, random groups |"
    )
    print("|---|---|---|---|---|---|")
    for answer, stages in (("full ranking", 3), ("best of 4", 1)):
        rng = np.random.default_rng(1)
        random_groups = information(rng.normal(0.0, SCORE_SD, size=(DRAWS, 4)) + SLOT_BIAS, stages)
        equal_groups = information(np.zeros((1, 4)), stages)
        for calls in (1, 2, 3, 4):
            g = calls * N
            known = [expected_largest_error(np.linalg.inv(g * info), rng) for info in (random_groups, equal_groups)]
            unknown = np.mean(
                [
                    expected_largest_error(
                        unknown_scores_covariance(
                            balanced_partitions(4 * calls, rng), rng.normal(0.0, SCORE_SD, N), stages
                        ),
                        rng,
                    )
                    for _ in range(DESIGN_DRAWS)
                ]
            )
            print(f"| {answer} | {g} | {calls} | {known[0]:.3f} | {known[1]:.3f} | {unknown:.3f} |")


if __name__ == "__main__":
    main()
