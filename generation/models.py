"""Jobs, steps and the stage pipeline (the generation issue fills this in)."""
