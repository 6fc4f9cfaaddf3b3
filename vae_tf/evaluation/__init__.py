"""Scoring a trained VAE from the outside.

- `elbo_iwae`: the test-set ELBO and importance-weighted log-likelihood,
  written to `evaluation.json`; `part_done` keeps a stopped one's sums so it resumes.
- `judge`: a classifier the VAE never trained with grades its samples.
- `benchmarking`: throughput against this machine's limits.
- `time_to_quality`: a run's test loss against its minutes of training.
"""
