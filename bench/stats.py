"""What the benchmark scripts compute from their timings."""


def percentile(values: list[float], share: float) -> float:
    """The value `share` (0.5, 0.99) of the way through `values` sorted; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")
