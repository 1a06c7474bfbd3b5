"""Functions that fedquery adds to SQL: blob readers, image and point-cloud helpers, embedders."""
