"""Multi-objective merge search (`python -m mixmerge.search`): Optuna samples a merge (method,
safety weight, per-layer gradient, the method's parameters), mixmerge merges and evaluates it on the
dev split, and the final Pareto front of harm against win rate is re-evaluated on the report split.

Modules: `space` (the search space and its checks), `storage` (Optuna storage, the worker lock,
stale trials), `trial` (one candidate: merge → dev evaluation), `front` (Pareto front, kept models,
tables and figure), `run` (the search, top to bottom).
"""
