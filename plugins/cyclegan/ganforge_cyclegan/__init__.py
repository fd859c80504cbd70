"""CycleGAN for ganforge (Zhu et al. 2017, arXiv 1703.10593)."""
