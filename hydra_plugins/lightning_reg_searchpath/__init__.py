"""Hydra SearchPathPlugin that makes lightning_reg's config groups visible to any Hydra app."""
