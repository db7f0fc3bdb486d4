"""The project's `prod` composition, as a separate project so test stacks stay out of the repo root."""
from stacks import deploy

deploy("prod")
