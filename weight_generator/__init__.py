"""The weight generator: a diffusion model that generates a concept's LoRA from its text, block by block."""
