"""Data: sources, mixtures of safety and general data, chat formatting and the DataModule."""
