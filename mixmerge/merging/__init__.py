"""Merging: recipes (which trained models, which weights) → a mergekit configuration → a merged model.

Modules: `weights` (the one meaning of the safety weight), `recipes` (config → the models to
merge), `checks` (can these models be merged at all), `mergekit_config` (the mergekit YAML),
`naming` (output names), `pipeline` (the run, top to bottom).
"""
