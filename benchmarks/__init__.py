"""`python -m benchmarks`: mixmerge side by side with TRL and the mergekit CLI on one machine.

Every framework's section runs in its own subprocess (so peak memory figures do not contaminate
each other) on the same model, synthetic records, batch size, maximum length, steps and threads.
It lives beside the package and is not installed with it: run it from the repository root
(`make bench`). It needs the `bench` extra (TRL) for the sft and dpo sections.
"""
