"""lightning_reg's Hydra sweeper on current Optuna: ``hydra/sweeper=lightning_reg_optuna``."""
