"""`python -m mixmerge.bench`: mixmerge side by side with TRL and the mergekit CLI on one machine.

Every framework's section runs in its own subprocess (so peak memory figures do not contaminate
each other) on the same model, synthetic records, batch size, maximum length, steps and threads.
"""
