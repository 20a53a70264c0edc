"""The least slot-bias error that a given number of groups allows: a Cramer-Rao bound.

The ranking bench reports the largest error of the three fitted slot biases of groups of 4
(slots 2 to 4, each relative to slot 1). How small can that be for a given number of calls? This
script computes the Fisher information that one full ranking of 4 carries about the three biases
when the comparator is the bench's (Plackett-Luce, first slot favoured by 0.3) and, generously,
the item scores are known exactly. Any fit that must also estimate the scores knows less, so its
errors are at least these. Two kinds of group:

- random: the four true scores drawn like the bench's (normal, standard deviation 1.65 on the
  model's scale, which is what a pair accuracy of 0.80 gives);
- equal: every group's four utilities equal, so each stage is a fair draw. This is the most
  informative group we know of: a numerical search over other score configurations found none
  better by more than 0.3% in variance.

The bound is the inverse of the total information; the expected largest absolute error of the
three is estimated by drawing errors from that normal.

Usage: python scripts/slot_bias_bound.py [GROUPS ...]   (default: N = 2,000 at 1 to 4 calls
per image, i.e. 2,000 to 8,000 groups)
"""

import itertools
import sys

import numpy as np

SLOT_BIAS = np.array([0.3, 0.0, 0.0, 0.0])
SCORE_SD = 1.65
DRAWS = 200_000


def information(utilities: np.ndarray) -> np.ndarray:
    """Mean Fisher information about the biases of slots 2..4 per full ranking of 4.

    `utilities` is (draws, 4): score + bias of the item in each slot. For each of the 24 orders,
    the score function of the Plackett-Luce likelihood with respect to the slot biases is summed
    over its three stages (winner indicator minus choice probability); the information is the
    probability-weighted outer product, averaged over the draws.
    """
    total = np.zeros((3, 3))
    for order in itertools.permutations(range(4)):
        remaining = list(range(4))
        log_p = np.zeros(len(utilities))
        score = np.zeros((len(utilities), 4))
        for winner in order[:3]:
            u = utilities[:, remaining]
            p = np.exp(u - u.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            log_p += np.log(p[:, remaining.index(winner)])
            score[:, winner] += 1.0
            score[:, remaining] -= p
            remaining.remove(winner)
        g = score[:, 1:]
        total += np.einsum("m,mi,mj->ij", np.exp(log_p), g, g) / len(utilities)
    return total


def expected_largest_error(cov: np.ndarray, rng: np.random.Generator) -> float:
    errors = rng.multivariate_normal(np.zeros(3), cov, size=DRAWS)
    return float(np.abs(errors).max(1).mean())


def main() -> None:
    groups = [int(g) for g in sys.argv[1:]] or [2_000, 4_000, 6_000, 8_000]
    rng = np.random.default_rng(1)
    random_groups = information(rng.normal(0.0, SCORE_SD, size=(DRAWS, 4)) + SLOT_BIAS)
    equal_groups = information(np.zeros((1, 4)))
    print("| groups of 4 | calls/image at N = 2,000 | known scores, random groups | known scores, equal utilities |")
    print("|---|---|---|---|")
    for g in groups:
        bounds = [expected_largest_error(np.linalg.inv(g * info), rng) for info in (random_groups, equal_groups)]
        print(f"| {g} | {g / 2_000:g} | {bounds[0]:.3f} | {bounds[1]:.3f} |")


if __name__ == "__main__":
    main()
