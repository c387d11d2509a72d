"""`python -m mixmerge.report`: collect evaluated models, build the study's tables and figures."""
