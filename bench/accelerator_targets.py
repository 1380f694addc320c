"""Issue 15's goal thresholds, in one place for the bench scripts that check them (``accelerators.py`` writes
them into its markdown, ``accelerator_goals.py`` marks each goal met or missed); torch-free."""

BASE_SHARE = 0.9  # 1: the base's text-only output at or above the unchanged photo on this share of concepts
OVER_PHOTO_DB = 3.0  # 2a: the generated adapter at step 0 above the unchanged photo, mean dB
OVER_RETRIEVAL_DB = 1.0  # 2b: ... and above nearest-text retrieval, mean dB
SHUFFLE_LOSS_DB = 2.0  # 2c: what it loses with another concept's text, mean dB
CLOSER_SHARE = 0.8  # 3: leave-out concepts whose generated adapter is closer to the own one than the mean adapter
EQUAL_LEAD_DB = 2.0  # 4a: the generated LoRA's lead over scratch at an equal budget, dB
SCRATCH_SPEEDUP = 5.0  # 4b: how much sooner than scratch it reaches scratch's plateau minus 0.5 dB
PIX2PIX_SPEEDUP = 20.0  # 5: how much sooner than pix2pix it reaches pix2pix's plateau
