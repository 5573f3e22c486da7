"""The compress wing: the search that finds the smallest clustered model within a validation budget.

- `engine`: the pipeline (sources, searches, precision fallback), behind `api.compress`;
- `proxy`: per-layer bytes and loss increases measured without training;
- `allocate`: their rate–distortion frontier across layers (multiple-choice knapsack);
- `greedy`: the thorough search's greedy per-layer choice;
- `policy`: how trials and finals fine-tune, BatchNorm re-estimation;
- `cache`: the first layer's features of the split, computed once for every fine-tuning that can take them;
- `trials`: what a run reports (trials, progress).
"""
