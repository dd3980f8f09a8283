"""Studies of the recipe, not artifacts: the naive fix measured, PreciseBN recalibration, dead
channels, MXNet's own INT8."""
