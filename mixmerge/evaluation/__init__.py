"""Evaluation: held-out eval sets, batched generation, judges (offline, OpenAI-compatible, local LM),
and the study's metrics (harm rate, relative harm change and win rate against a baseline, per language).
"""
