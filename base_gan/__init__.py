"""The base GAN: the E2GAN-shaped text-conditioned generator, the pix2pix baseline, the PatchGAN
discriminator, losses, complexity counts and the trainer; ``base_gan.models`` saves and loads them."""
