"""The bottom layer: errors, files, atomic writes, locks, seeds, the workspace layout, images, plots,
the budgeted training loop and resume checks. Imports neither torch nor any other layer."""
