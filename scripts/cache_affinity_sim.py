"""Would sending each group to the device that already holds its images pay? A simulation.

Each device's copy of Co-Instruct keeps its own embedding cache, and the inference threads take
groups from one queue in arrival order, so with several GPUs an image is sent through the vision
tower once on every device that meets it. This script counts the share of images found in the
cache (the hit rate) for a job of N images at a budget in calls per image, with 1, 2 and 4
devices, under two ways of taking work:

- in order (what `actors/src/actors/inference.rs` does): a free device takes the oldest tasks,
  its share of those waiting (as `batch_share` computes it);
- by affinity (the alternative): a free device takes the tasks with the most images already in
  its cache, oldest first among equals, and a task passed over once per device is taken next,
  so that none waits for ever.

Rounds are random groups of 4 over two thirds of the items (the full mode's rounds), the order
in which devices come free is random, and caches never evict. The in-order figures reproduce
the ones measured through the real pipeline with the tiny checkpoint on the CPU (README: 87.5%,
75.0% and 54.6% at N = 100 and 2 calls per image).

Usage: python3 scripts/cache_affinity_sim.py   (50 seeds each; a few seconds)
"""

import random

GROUP = 4
MAX_BATCH = 16


def hit_rate(n: int, calls_per_image: float, devices: int, affinity: bool, seed: int) -> float:
    rng = random.Random(seed)
    caches = [set() for _ in range(devices)]
    hits = misses = 0
    groups_left = int(n * calls_per_image)
    while groups_left > 0:
        items = list(range(n))
        rng.shuffle(items)
        size = min(groups_left, (2 * n // 3) // GROUP)
        waiting = [[items[GROUP * g : GROUP * (g + 1)], 0] for g in range(size)]
        groups_left -= size
        while waiting:
            device = rng.randrange(devices)
            share = max(1, min(MAX_BATCH, -(-len(waiting) // devices)))
            order = list(range(len(waiting)))
            if affinity:
                held = [sum(item in caches[device] for item in group) for group, _ in waiting]
                order.sort(key=lambda i: (waiting[i][1] < devices, -held[i], i))
            chosen = set(order[:share])
            for index, task in enumerate(waiting):
                if index not in chosen:
                    task[1] += 1
            for index in sorted(chosen):
                for item in waiting[index][0]:
                    if item in caches[device]:
                        hits += 1
                    else:
                        misses += 1
                        caches[device].add(item)
            waiting = [task for index, task in enumerate(waiting) if index not in chosen]
    return hits / (hits + misses)


def main() -> None:
    seeds = range(50)
    print("N = 100 images, 2 calls per image, mean of 50 seeds: share of images found cached")
    print("devices | in order | by affinity")
    for devices in (1, 2, 4):
        rates = [
            sum(hit_rate(100, 2.0, devices, affinity, seed) for seed in seeds) / len(seeds)
            for affinity in (False, True)
        ]
        print(f"{devices:7} | {rates[0]:8.3f} | {rates[1]:.3f}")


if __name__ == "__main__":
    main()
