"""Studies: a whole experiment (train → merge → evaluate → report) as Hydra multiruns in dependency order."""
