"""Recipes of the bundled models: what data, which network, how long, and what ships.

``studio train --recipe NAME`` (and ``make defaults``) runs one: install and prepare the data it needs
(``data``), train or continue training it (``runner``), score it on the fixed held-out set
(``scoring``), and export the fp16 checkpoint with its card into ``resources/models`` (``export``).
The recipes themselves are plain data in ``catalog``. No Qt here.
"""

from studio.engine.recipes.catalog import RECIPES, get_recipe, recipe_names
from studio.engine.recipes.spec import DeviceSchedule, Recipe

__all__ = ["RECIPES", "DeviceSchedule", "Recipe", "get_recipe", "recipe_names"]
