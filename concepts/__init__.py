"""The built-in concept cards: one ``<name>.yaml`` per concept, installed with the package."""

from pathlib import Path

CARDS_DIR = Path(__file__).parent
