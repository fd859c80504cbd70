"""pix2pix for ganforge (Isola, Zhu, Zhou, Efros 2017, arXiv 1611.07004)."""
