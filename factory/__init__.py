"""editfactory: distil a diffusion edit into a tiny mobile GAN."""

__version__ = "0.1.0"
