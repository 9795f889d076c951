#!/bin/bash
# Issue 28's README table: the digits main job's MLP with each new technique, seeds 1-3, against the baseline.
set -u
python -m lightning_reg.train -m \
  'callbacks=[default],[default,label_smoothing],[default,gaussian_noise],[default,gaussian_dropout],[default,alpha_dropout],[default,min_max_norm],[default,unit_norm],[default,non_neg],[default,orthogonal],[default,activity_l1],[default,activity_l2]' \
  seed=1,2,3 torch_threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=/tmp/issue28/mlp_callbacks
python -m lightning_reg.train -m \
  augment=none,augmix_jsd,cutout,randaugment,trivialaugment data.augment.augment_on=cpu \
  seed=1,2,3 torch_threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=/tmp/issue28/mlp_augment
python -m lightning_reg.train -m model=cnn \
  'callbacks=[default],[default,spatial_dropout],[default,dropblock]' \
  seed=1,2,3 torch_threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=/tmp/issue28/cnn_callbacks
python -m lightning_reg.train -m \
  augment=randaugment,trivialaugment data.augment.augment_on=device \
  seed=1,2,3 torch_threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  hydra.sweep.dir=/tmp/issue28/mlp_augment_device
