"""Training: LightningModules for SFT and preference objectives, strategies, and export."""
