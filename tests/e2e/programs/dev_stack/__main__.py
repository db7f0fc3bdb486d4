"""The project's `dev` composition, as a separate project so test stacks stay out of the repo root."""
from stacks import deploy

deploy("dev")
